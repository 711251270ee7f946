"""Profile one contender's client CPU under load, with cProfile, against the simulated server.

The server runs in its own process, so the profile holds the contender, asyncio and the
measurement loop only. Example::

    .venv/bin/python benchmarks/profile_client.py --contender polyfuse --concurrency 64

prints the top functions by own time and by cumulative time, and writes the raw profile to
``--out`` (open it with ``python -m pstats`` or snakeviz).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.contenders import CONTENDERS
from benchmarks.harness.drive import steady_load
from benchmarks.harness.simserver import ServerSpec, SimServers
from benchmarks.harness.workload import Workload


async def _profile(workload: Workload, args: argparse.Namespace) -> cProfile.Profile:
    contender = CONTENDERS[args.contender](workload)
    await contender.open()
    for _ in range(3):
        await contender.fuse()
    # Own CPU time, not wall time: a syscall that is preempted on a busy machine must not
    # look expensive.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    result = await steady_load(
        contender, concurrency=args.concurrency, duration_s=args.seconds, window_start_s=0.0
    )
    profiler.disable()
    await contender.aclose()
    cpu = result["cpu_per_fusion_s"]
    print(
        f"{args.contender} at concurrency {args.concurrency}: {result['fusions']} fusions, "
        f"{result['fusions_per_s']:.1f}/s, "
        f"{cpu * 1000 if cpu else float('nan'):.2f} ms CPU per fusion (profiler on)"
    )
    return profiler


def main() -> None:
    """Parse the options, run the profile, print the top entries."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contender", default="polyfuse", choices=sorted(CONTENDERS))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--base-url", help="profile against this server instead of a simulated one")
    parser.add_argument("--model", default="sim-model")
    parser.add_argument("--out", type=Path, default=Path("/tmp/polyfuse-client.prof"))
    args = parser.parse_args()

    def run(url: str) -> cProfile.Profile:
        workload = Workload.single(url, args.n, model=args.model)
        return asyncio.run(_profile(workload, args))

    started = time.perf_counter()
    if args.base_url:
        profiler = run(args.base_url)
    else:
        with SimServers([ServerSpec()]) as servers:
            profiler = run(servers.base_urls[0])
    profiler.dump_stats(args.out)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(f"profile written to {args.out} ({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
