"""What a contender is: one way of writing "N candidates, then a fusor call"."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from ..workload import Workload

__all__ = ["Contender", "ContenderUnavailable"]


class ContenderUnavailable(RuntimeError):
    """The contender cannot run here (a package is missing); the message says how to fix it."""


class Contender(ABC):
    """One way of running the workload's fusion.

    Lifecycle, all inside one event loop: :meth:`open` (build clients), then any number of
    :meth:`fuse` / :meth:`fuse_stream` calls, possibly concurrent, then :meth:`aclose`.

    Class attributes:
        name: the id used on the command line and in results.
        label: how tables and plots name it.
        waits_for_all: whether it always waits for every candidate (no quorum).
        sequential_calls: calls on its critical path (candidates, then fusor: 2), so its ideal
            latency is this many calls.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    waits_for_all: ClassVar[bool] = True
    sequential_calls: ClassVar[int] = 2

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Build clients in the running event loop (clients never cross loops)."""

    @abstractmethod
    async def fuse(self) -> str:
        """Run one fusion and return the fused answer's text."""

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        """Run one fusion streaming the fusor's answer; call ``on_first_token`` at its first
        text delta. The default streams nothing (the first token is the whole answer)."""
        text = await self.fuse()
        on_first_token()
        return text

    def helper_pids(self) -> list[int]:
        """Processes doing this contender's work besides this one (e.g. a proxy), whose CPU and
        memory count as its own."""
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close the clients."""
