"""Hedged calls ("The Tail at Scale", Dean & Barroso 2013): duplicate a call that is late.

:class:`HedgedBackend` wraps any backend. When a call has produced no first token (a stream) or
no answer (a plain request) after ``after`` seconds, it sends the same request again — to the
same backend or to a named ``fallback`` — takes whichever answers first and cancels the other
(its stream or request is closed, so the server stops generating). Both calls are counted in
the winner's usage: the cancelled one as a call whose usage is unknown
(``calls_without_usage``), a failed one as a call. A shared :class:`HedgeBudget` caps the extra
calls at a fraction of the calls made. A failing hedge never fails the call: the other one's
answer (or error) stands.

With ``percentile`` set (e.g. 95), the threshold follows the endpoint: once
``MIN_OBSERVATIONS`` calls were seen, it is that percentile of the observed times to first token
(streams) or to the answer (plain requests) over the last ``WINDOW`` calls; ``after`` holds until
then.

Set it for a whole fusion with ``FusionOptions.hedge`` (``{"after": 2.0, "budget": 0.25}``):
every pool member and the aggregating model are wrapped, sharing one budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .backends.base import Backend, Completion, StreamDelta
from .messages import ChatRequest
from .usage import Usage

__all__ = ["MIN_OBSERVATIONS", "WINDOW", "HedgeBudget", "HedgeSettings", "HedgedBackend"]

MIN_OBSERVATIONS = 20
"""Calls observed before a ``percentile`` threshold replaces the fixed ``after``."""
WINDOW = 200
"""How many recent calls a ``percentile`` threshold is computed over."""

_T = TypeVar("_T")


class HedgeSettings(BaseModel):
    """The hedging setting (``FusionOptions.hedge``).

    Args:
        after: seconds without a first token (or answer) after which a duplicate is sent (with
            ``percentile``: until enough calls were observed).
        budget: the most extra calls, as a fraction of the calls made (0.25: one hedge per
            four calls at most).
        percentile: follow the endpoint: hedge after this percentile of its observed times
            to first token (e.g. 95).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: float = Field(gt=0)
    budget: float = Field(default=0.25, ge=0, le=1)
    percentile: float | None = Field(default=None, gt=0, lt=100)


@dataclass
class HedgeBudget:
    """Counts calls and hedges; a hedge is allowed while ``hedges < fraction * calls``."""

    fraction: float = 0.25
    calls: int = 0
    hedges: int = 0
    hedge_wins: int = 0
    hedge_failures: int = 0

    def take(self) -> bool:
        """Reserve one extra call if the budget allows it."""
        if self.hedges + 1 > self.fraction * self.calls:
            return False
        self.hedges += 1
        return True


class HedgedBackend:
    """A backend whose late calls get a duplicate; see the module docstring.

    Args:
        backend: the backend to call.
        after: seconds without a first token (stream) or answer (plain request) before hedging.
        fallback: where the duplicate goes (default: ``backend`` itself).
        budget: a :class:`HedgeBudget` shared by several wrappers (default: a new one, 0.25).
        percentile: hedge after this percentile of the observed times to first token
            (streams) or answer (plain requests) once ``MIN_OBSERVATIONS`` calls were seen.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        after: float,
        fallback: Backend | None = None,
        budget: HedgeBudget | None = None,
        percentile: float | None = None,
    ) -> None:
        self.backend = backend
        self.after = after
        self.percentile = percentile
        self.observed: dict[str, deque[float]] = {
            "stream": deque(maxlen=WINDOW),
            "complete": deque(maxlen=WINDOW),
        }
        self.fallback = fallback or backend
        self.budget = budget if budget is not None else HedgeBudget()
        # What polyfuse learns about ``n`` is kept here, starting from the wrapped backend's.
        self.supports_n: bool | None = backend.supports_n

    @property
    def name(self) -> str:
        """The wrapped backend's name."""
        return self.backend.name

    @property
    def model(self) -> str:
        """The wrapped backend's model."""
        return self.backend.model

    def threshold(self, kind: str) -> float:
        """Seconds before hedging a ``stream`` or ``complete`` call, as of now."""
        seen = self.observed[kind]
        if self.percentile is None or len(seen) < MIN_OBSERVATIONS:
            return self.after
        cuts = statistics.quantiles(seen, n=1000, method="inclusive")
        return cuts[min(998, max(0, round(self.percentile * 10) - 1))]

    def __repr__(self) -> str:
        return f"HedgedBackend({self.backend!r}, after={self.after:g})"

    def rebound(self, rebind: Callable[[Backend], Backend]) -> HedgedBackend:
        """The same hedging over ``rebind(backend)`` (and ``rebind(fallback)``).

        The view shares this wrapper's budget and observed times, so a per-call view (e.g. a
        LangChain model bound to one call's callbacks) hedges as the long-lived one would.
        """
        backend = rebind(self.backend)
        fallback = None if self.fallback is self.backend else rebind(self.fallback)
        view = HedgedBackend(
            backend,
            after=self.after,
            fallback=fallback,
            budget=self.budget,
            percentile=self.percentile,
        )
        view.observed = self.observed
        view.supports_n = self.supports_n
        return view

    async def aclose(self) -> None:
        """Close the wrapped backend (and the fallback)."""
        await self.backend.aclose()
        if self.fallback is not self.backend:
            await self.fallback.aclose()

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """Complete ``request``; a duplicate goes out if no answer came after ``after``."""
        self.budget.calls += 1
        winner, extra = await self._race(
            lambda: self.backend.complete(request, n=n),
            lambda: self.fallback.complete(request, n=n),
            kind="complete",
        )
        if extra.calls and winner:
            winner[0] = replace(winner[0], usage=winner[0].usage + extra)
        return winner

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream ``request``; a duplicate goes out if no first token came after ``after``."""
        self.budget.calls += 1
        primary = self.backend.stream(request)
        streams: dict[int, AsyncIterator[StreamDelta]] = {0: primary}

        def start_hedge() -> Awaitable[tuple[list[StreamDelta], AsyncIterator[StreamDelta]]]:
            hedge = self.fallback.stream(request)
            streams[1] = hedge
            return _first_delta(hedge)

        try:
            (read, stream), extra = await self._race(
                lambda: _first_delta(primary), start_hedge, kind="stream"
            )
            counted = False
            for delta in read:
                counted = counted or delta.usage is not None
                yield _with_usage(delta, extra)
            async for delta in stream:
                counted = counted or delta.usage is not None
                yield _with_usage(delta, extra)
            if extra.calls and not counted:
                # The winner reported no usage: still count both calls.
                yield StreamDelta(usage=Usage.missing() + extra)
        finally:
            for other in streams.values():
                with contextlib.suppress(Exception):
                    await other.aclose()  # type: ignore[attr-defined]

    async def _race(
        self,
        primary: Callable[[], Awaitable[_T]],
        hedge: Callable[[], Awaitable[_T]],
        *,
        kind: str,
    ) -> tuple[_T, Usage]:
        """The first successful result, and the usage of the call that lost (if any)."""
        started = time.perf_counter()
        first: asyncio.Task[_T] = asyncio.ensure_future(primary())
        first.add_done_callback(
            lambda task: (
                None
                if task.cancelled() or task.exception() is not None
                else self.observed[kind].append(time.perf_counter() - started)
            )
        )
        try:
            done, _ = await asyncio.wait({first}, timeout=self.threshold(kind))
        except BaseException:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            raise
        if done or not self.budget.take():
            return await first, Usage()
        second = asyncio.ensure_future(hedge())
        racers = {first, second}
        failed = Usage()
        try:
            while racers:
                done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: t is not first):
                    racers.discard(task)
                    if task.exception() is not None:
                        failed = failed + Usage(calls=1)
                        if task is second:
                            self.budget.hedge_failures += 1
                        continue
                    if task is second:
                        self.budget.hedge_wins += 1
                    # The loser: still running (cancelled now, usage unknown) or failed.
                    loser = Usage.missing() if racers else Usage()
                    await _cancel(racers)
                    return task.result(), failed + loser
            # Both failed: the primary's error stands.
            exc = first.exception()
            assert exc is not None
            raise exc
        finally:
            await _cancel(racers)


async def _first_delta(
    stream: AsyncIterator[StreamDelta],
) -> tuple[list[StreamDelta], AsyncIterator[StreamDelta]]:
    """Every delta up to the first with content, a tool call, a finish reason or usage."""
    read: list[StreamDelta] = []
    async for delta in stream:
        read.append(delta)
        if delta.content or delta.tool_calls or delta.usage is not None or delta.finish_reason:
            break
    return read, stream


def _with_usage(delta: StreamDelta, extra: Usage) -> StreamDelta:
    if delta.usage is None or not extra.calls:
        return delta
    return replace(delta, usage=delta.usage + extra)


async def _cancel(tasks: set[asyncio.Task[_T]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()
