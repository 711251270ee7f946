"""One measurement in a fresh process: ``python -m benchmarks.harness.worker '<JSON job>'``.

A fresh process per (contender, measurement) keeps the figures independent: peak RSS is that
contender's own (its imports included), CPU time is that contender's alone, and a contender that
hangs is killed without taking the run down. The job is ``{"contender": name, "workload":
Workload fields, "mode": "latency" | "ttft" | "load" | "burst", "params": {...}}``; the last line
printed is ``RESULT <JSON>``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import traceback
from typing import Any

from .contenders import CONTENDERS, ContenderUnavailable
from .drive import burst, current_rss_mb, latency_series, peak_rss_mb, steady_load, ttft_series
from .runner import RESULT_PREFIX
from .workload import Workload

__all__ = ["main", "run_job"]


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Open the contender, run the measurement, close it; the measurement's dict."""
    name = job["contender"]
    contender = CONTENDERS[name](Workload.from_json(job["workload"]))
    mode = job["mode"]
    params: dict[str, Any] = job.get("params", {})
    await contender.open()
    try:
        if mode in ("load", "burst"):
            for _ in range(params.get("warmup", 1)):
                await contender.fuse()
        gc.collect()
        rss_open = current_rss_mb(contender)
        if mode == "latency":
            result = await latency_series(contender, count=params["count"], warmup=params["warmup"])
        elif mode == "ttft":
            result = await ttft_series(contender, count=params["count"], warmup=params["warmup"])
        elif mode == "load":
            result = await steady_load(
                contender,
                concurrency=params["concurrency"],
                duration_s=params["duration_s"],
                window_start_s=params["window_start_s"],
                server_pid=params.get("server_pid"),
            )
        elif mode == "burst":
            result = await burst(
                contender, concurrency=params["concurrency"], timeout_s=params["timeout_s"]
            )
        else:
            raise ValueError(f"unknown mode {mode!r}")
        result.setdefault("peak_rss_mb", peak_rss_mb(contender))
    finally:
        await contender.aclose()
    result["rss_open_mb"] = rss_open
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the job given as JSON on the command line; print ``RESULT <json>``."""
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(args[0])
    started = time.perf_counter()
    try:
        result = asyncio.run(run_job(job))
    except ContenderUnavailable as exc:
        result = {"unavailable": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    result["worker_wall_s"] = time.perf_counter() - started
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
