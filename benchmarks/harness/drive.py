"""Measurement loops, run inside a worker process against one opened contender.

Every loop returns a JSON-able dict. Time is ``time.perf_counter``; client CPU is
``time.process_time`` of this process (user + system, all threads), which holds nothing but
the contender, the loop and this driver, plus the CPU of the contender's helper processes (a
proxy); memory is the peak RSS of this process (``resource.getrusage``) plus its helpers'.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from typing import Any

from .contenders import Contender
from .procstat import cpu_seconds, rss_mb
from .procstat import peak_rss_mb as helper_peak_rss_mb

__all__ = [
    "burst",
    "client_cpu",
    "current_rss_mb",
    "latency_series",
    "peak_rss_mb",
    "stamper",
    "steady_load",
    "ttft_series",
]


def peak_rss_mb(contender: Contender | None = None) -> float:
    """Peak resident set size so far, in MB: this process's plus the contender's helpers'."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    helpers = contender.helper_pids() if contender is not None else []
    return own + sum(helper_peak_rss_mb(pid) for pid in helpers)


def client_cpu(contender: Contender) -> float:
    """CPU seconds used so far by this process and the contender's helper processes."""
    return time.process_time() + sum(cpu_seconds(pid) for pid in contender.helper_pids())


def current_rss_mb(contender: Contender | None = None) -> float:
    """Resident set size now, in MB: this process's plus the contender's helpers'."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    own = pages * resource.getpagesize() / (1024.0 * 1024.0)
    helpers = contender.helper_pids() if contender is not None else []
    return own + sum(rss_mb(pid) for pid in helpers)


async def latency_series(contender: Contender, *, count: int, warmup: int) -> dict[str, Any]:
    """``count`` fusions one after another (after ``warmup`` untimed ones)."""
    for _ in range(warmup):
        await contender.fuse()
    latencies: list[float] = []
    cpu0 = client_cpu(contender)
    wall0 = time.perf_counter()
    for _ in range(count):
        started = time.perf_counter()
        await contender.fuse()
        latencies.append(time.perf_counter() - started)
    return {
        "latencies_s": latencies,
        "cpu_s": client_cpu(contender) - cpu0,
        "wall_s": time.perf_counter() - wall0,
        "fusions": count,
    }


async def ttft_series(contender: Contender, *, count: int, warmup: int) -> dict[str, Any]:
    """``count`` streamed fusions one after another: time to the first fused token, and total."""
    for _ in range(warmup):
        await contender.fuse_stream(lambda: None)
    ttfts: list[float] = []
    totals: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        first: list[float] = []
        await contender.fuse_stream(stamper(first, started))
        totals.append(time.perf_counter() - started)
        ttfts.append(first[0] if first else totals[-1])
    return {"ttft_s": ttfts, "latencies_s": totals, "fusions": count}


def stamper(into: list[float], started: float) -> Callable[[], None]:
    return lambda: into.append(time.perf_counter() - started)


async def steady_load(
    contender: Contender,
    *,
    concurrency: int,
    duration_s: float,
    window_start_s: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``concurrency`` closed-loop workers, each starting a new fusion when its last one ends.

    Throughput, CPU and latencies are taken over ``[window_start_s, duration_s]`` only (the
    ramp-up before it is excluded); fusions still in flight at the end are cancelled. With
    ``server_pid`` (a local server), its CPU over the window is recorded too.
    """
    completions: list[tuple[float, float]] = []  # (finished at, latency)
    errors: list[str] = []
    start = time.perf_counter()
    stop_at = start + duration_s

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            try:
                await contender.fuse()
            except Exception as exc:  # recorded and reported, the run goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            ended = time.perf_counter()
            completions.append((ended - start, ended - began))

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(window_start_s)
    cpu0 = client_cpu(contender)
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    done0 = len(completions)
    await asyncio.sleep(max(0.0, duration_s - window_start_s))
    cpu1 = client_cpu(contender)
    server1 = cpu_seconds(server_pid) if server_pid else 0.0
    done1 = len(completions)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    window = duration_s - window_start_s
    in_window = [lat for at, lat in completions if window_start_s <= at <= duration_s]
    fusions = done1 - done0
    return {
        "concurrency": concurrency,
        "window_s": window,
        "fusions": fusions,
        "fusions_per_s": fusions / window,
        "cpu_s": cpu1 - cpu0,
        "cpu_per_fusion_s": (cpu1 - cpu0) / fusions if fusions else None,
        "server_cores": (server1 - server0) / window if server_pid else None,
        "latencies_s": in_window,
        "total_completed": len(completions),
        "errors": len(errors),
        "first_errors": errors[:3],
        "peak_rss_mb": peak_rss_mb(contender),
    }


async def burst(contender: Contender, *, concurrency: int, timeout_s: float) -> dict[str, Any]:
    """``concurrency`` fusions started at once; how long until every one is done.

    Also records the peak RSS with all of them in flight.
    """
    rss_before = current_rss_mb(contender)
    errors: list[str] = []
    cpu0 = client_cpu(contender)
    start = time.perf_counter()
    tasks = [asyncio.ensure_future(contender.fuse()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    elapsed = time.perf_counter() - start
    cpu = client_cpu(contender) - cpu0
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ok = 0
    for task in done:
        exc = task.exception()
        if exc is None:
            ok += 1
        else:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    finished = not pending and not errors
    return {
        "concurrency": concurrency,
        "completed": ok,
        "errors": len(errors),
        "first_errors": errors[:3],
        "finished": finished,
        "elapsed_s": elapsed,
        "fusions_per_s": ok / elapsed if finished else None,
        "completed_per_s": ok / elapsed,
        "cpu_s": cpu,
        "cpu_per_fusion_s": cpu / ok if ok else None,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(contender),
    }
