"""Load generation: closed-loop steady state for throughput, one-at-a-time series for latency.

A *unit* is one thing a user waits for: one direct call, or one whole fusion (N candidates and
the fusor). :func:`closed_loop` keeps ``workers`` units in flight (each worker starts its next
unit as soon as its last one ends), lets the system settle, then counts units completed in a
measurement window. When the window closes, units still in flight are cancelled and the run
waits ``drain_s`` so that the server finishes the work they left behind before the next
contender starts (``transformers serve`` keeps generating for a client that left).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadResult", "Outcome", "SeriesResult", "closed_loop", "series"]


@dataclass(slots=True)
class Outcome:
    """What one unit did: server calls made, tokens (from ``usage`` when the client exposes
    it), time to its first answer token when streamed, and anything else worth keeping."""

    calls: int = 1
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    ttft_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Done:
    start: float
    end: float
    outcome: Outcome


@dataclass
class LoadResult:
    """Steady-state figures of one closed-loop run."""

    workers: int
    window_s: float
    warmup_s: float
    units: int
    units_per_s: float
    calls_per_s: float
    completion_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_mean_s: float | None
    littles_law_units_per_s: float | None
    oldest_in_flight_s: float | None
    errors: int
    error_samples: list[str]
    window: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        """Rounded figures for the results file (the window's host times left out)."""
        data = {k: v for k, v in self.__dict__.items() if k != "window"}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def closed_loop(
    run_one: Callable[[], Awaitable[Outcome]],
    *,
    workers: int,
    window_s: float,
    warmup_units: int | None = None,
    max_warmup_s: float = 60.0,
    drain_s: float = 3.0,
    stagger_s: float = 0.0,
    max_errors: int = 20,
) -> LoadResult:
    """Run ``workers`` closed-loop workers over ``run_one`` and measure a steady window.

    Args:
        run_one: starts and awaits one unit.
        workers: units kept in flight.
        window_s: the measurement window's length.
        warmup_units: units completed before the window opens (default: ``workers``, i.e.
            every worker finished about one unit, so the pipeline is mixed); the window opens
            after ``max_warmup_s`` at the latest.
        drain_s: idle time after cancelling what is still in flight.
        stagger_s: spread the workers' first starts uniformly over this many seconds.
        max_errors: stop early after this many failed units (a dead server fails fast).

    ``units_per_s`` counts units completed in the window. ``littles_law_units_per_s`` is
    ``workers / mean latency`` of the same units (Little's law for a closed loop with no think
    time): it does not depend on where bursts of completions fall relative to the window,
    which matters for fusions, whose N+1 calls queue in phase behind a shared cap and
    complete in waves. It assumes no unit stalls for longer than the window:
    ``oldest_in_flight_s`` (the age of the oldest unit still running when the window closed)
    shows whether one did.
    """
    target = workers if warmup_units is None else warmup_units
    done: list[_Done] = []
    errors: list[str] = []
    warm = asyncio.Event()
    failed = asyncio.Event()
    rng = random.Random(0)
    in_flight: dict[int, float] = {}

    async def worker(slot: int, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        while True:
            start = time.perf_counter()
            in_flight[slot] = start
            try:
                outcome = await run_one()
            except Exception as exc:  # recorded and counted; too many stop the run
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                if len(errors) >= max_errors:
                    failed.set()
                    return
                continue
            done.append(_Done(start, time.perf_counter(), outcome))
            if len(done) >= target:
                warm.set()

    started = time.perf_counter()
    tasks = [
        asyncio.ensure_future(worker(slot, rng.uniform(0, stagger_s) if stagger_s else 0.0))
        for slot in range(workers)
    ]
    oldest: float | None = None
    try:
        await _first(warm, failed, timeout=max_warmup_s)
        w0 = time.perf_counter()
        if not failed.is_set():
            await _first(failed, None, timeout=window_s)
        w1 = time.perf_counter()
        oldest = w1 - min(in_flight.values()) if in_flight else None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(drain_s)
    result = _summarise(done, errors, workers, w0, w1, w0 - started)
    result.oldest_in_flight_s = oldest
    return result


async def _first(a: asyncio.Event, b: asyncio.Event | None, *, timeout: float) -> None:
    waits = [asyncio.ensure_future(a.wait())]
    if b is not None:
        waits.append(asyncio.ensure_future(b.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def _summarise(
    done: list[_Done], errors: list[str], workers: int, w0: float, w1: float, warmup_s: float
) -> LoadResult:
    window = max(w1 - w0, 1e-9)
    inside = [d for d in done if w0 <= d.end <= w1]
    latencies = [d.end - d.start for d in inside]
    ctoks = [d.outcome.completion_tokens for d in inside]
    ptoks = [d.outcome.prompt_tokens for d in inside]
    mean_latency = statistics.fmean(latencies) if latencies else None
    return LoadResult(
        workers=workers,
        window_s=window,
        warmup_s=warmup_s,
        units=len(inside),
        units_per_s=len(inside) / window,
        calls_per_s=sum(d.outcome.calls for d in inside) / window,
        completion_tokens_per_s=(
            sum(t for t in ctoks if t is not None) / window
            if ctoks and all(t is not None for t in ctoks)
            else None
        ),
        prompt_tokens_per_s=(
            sum(t for t in ptoks if t is not None) / window
            if ptoks and all(t is not None for t in ptoks)
            else None
        ),
        latency_p50_s=_quantile(latencies, 0.5),
        latency_p90_s=_quantile(latencies, 0.9),
        latency_mean_s=mean_latency,
        littles_law_units_per_s=workers / mean_latency if mean_latency else None,
        oldest_in_flight_s=None,
        errors=len(errors),
        error_samples=errors[:3],
        window=(w0, w1),
    )


@dataclass
class SeriesResult:
    """Units run one at a time: latency and time to first token, with each unit's extras."""

    count: int
    latency_p50_s: float | None
    ttft_p50_s: float | None
    ttft_min_s: float | None
    outcomes: list[dict[str, Any]]
    errors: list[str]

    def to_json(self) -> dict[str, Any]:
        """Figures for the results file."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


async def series(
    run_one: Callable[[], Awaitable[Outcome]], *, count: int, unit_timeout_s: float = 120.0
) -> SeriesResult:
    """Run ``count`` units one after another (nothing else in flight); a unit that takes
    longer than ``unit_timeout_s`` is cancelled and recorded as an error."""
    latencies: list[float] = []
    ttfts: list[float] = []
    outcomes: list[dict[str, Any]] = []
    errors: list[str] = []
    for _ in range(count):
        start = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(run_one(), unit_timeout_s)
        except Exception as exc:  # recorded with the series
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        latency = time.perf_counter() - start
        latencies.append(latency)
        if outcome.ttft_s is not None:
            ttfts.append(outcome.ttft_s)
        outcomes.append({"latency_s": round(latency, 4), "ttft_s": outcome.ttft_s, **outcome.extra})
    return SeriesResult(
        count=len(latencies),
        latency_p50_s=_quantile(latencies, 0.5),
        ttft_p50_s=_quantile(ttfts, 0.5),
        ttft_min_s=min(ttfts) if ttfts else None,
        outcomes=outcomes,
        errors=errors,
    )
