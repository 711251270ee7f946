"""Running a long command so that the first Ctrl-C lets the rows in flight finish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

from ..distill import StopSignal, stop_on_signals

__all__ = ["EXIT_STOPPED", "run_stoppable"]

EXIT_STOPPED = 130
"""Exit status of a run that a signal stopped before every row was started (128 + SIGINT)."""

T = TypeVar("T")


def run_stoppable(
    make: Callable[[StopSignal | None], Coroutine[Any, Any, T]],
    *,
    graceful: bool,
    console: Console,
) -> tuple[T, str | None]:
    """``asyncio.run(make(stop))`` and the name of the signal that stopped it, if one did.

    With ``graceful`` the first SIGINT (Ctrl-C) or SIGTERM sets ``stop``, which the engine
    reads as "start no new row", and the console says so; a second Ctrl-C stops at once.
    Without it (the Ray engine, which hands every row over at the start) ``stop`` is ``None``
    and signals act as usual.
    """
    stopped: list[str] = []

    async def main() -> T:
        if not graceful:
            return await make(None)
        with stop_on_signals(lambda text: console.print(f"[yellow]{escape(text)}[/]")) as stop:
            try:
                return await make(stop)
            finally:
                if stop.is_set():
                    stopped.append(stop.reason or "stopped")

    result = asyncio.run(main())
    return result, (stopped[0] if stopped else None)
