"""``polyfuse distill`` throughput against a simulated server's capacity bound.

The simulated server (``FakeOpenAIServer`` in its own process, see
``benchmarks/harness/simserver.py``) serves at most ``capacity`` requests at once, each taking
``ttft + output_tokens / tokens_per_s`` seconds. A row needs ``teachers`` sampling calls plus one
fusor call, so no client can beat::

    bound rows/s = capacity / ((teachers + 1) * call_s)

The script measures, in the same run:

1. ``raw``: hand-written HTTP/1.1 requests (the harness's CPU floor) kept ``2 * capacity`` in
   flight — what the server really delivers on this machine (requests/s), the practical bound;
2. ``distill``: ``polyfuse.distill.adistill`` over ``--rows`` prompts (asyncio engine by default),
   writing and fsync-ing its JSONL records like a real run;

and prints rows/s (start of the run to its end: pipeline fill and, for Ray, its start-up
included), when the first record became durable, the ratios to both bounds, and the client's
CPU per row (the driver's, for Ray: its actors run in other processes).

Run::

    .venv/bin/python benchmarks/distill_throughput.py
    .venv/bin/python benchmarks/distill_throughput.py --rows 600 --capacity 64 --teachers 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.harness.contenders.raw_socket import RawHTTP  # noqa: E402
from benchmarks.harness.simserver import ServerSpec, SimServers  # noqa: E402

from polyfuse.distill import DistillSpec, DistillSummary, RunStats, adistill  # noqa: E402


async def measure_raw(url: str, requests: int, in_flight: int) -> float:
    """Requests/s the server completes with ``in_flight`` requests kept open.

    Uses the harness's hand-written HTTP/1.1 client (the CPU floor), so that the figure is the
    server's, not a client library's.
    """
    body = json.dumps(
        {"model": "raw", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
    ).encode()
    client = RawHTTP(url, "unused")
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.post(body)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return requests / (time.perf_counter() - started)
    finally:
        client.close()


@dataclass
class DistillRun:
    """One measured distill run."""

    rows: int
    rows_per_s: float
    first_record_s: float
    cpu_per_row_s: float


class _Clock:
    """A progress listener that notes when the first record became durable."""

    def __init__(self) -> None:
        self.begin = self.first = 0.0

    def started(self, summary: DistillSummary) -> None:
        self.begin = time.perf_counter()

    def advanced(self, stats: RunStats) -> None:
        self.first = self.first or time.perf_counter()

    def finished(self, stats: RunStats) -> None:
        pass


async def measure_distill(url: str, args: argparse.Namespace, workdir: Path) -> DistillRun:
    """Run distill over ``args.rows`` prompts and time it."""
    prompts = workdir / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": f"Explain topic number {i} in two sentences."}) + "\n"
            for i in range(args.rows)
        )
    )
    teachers = [f"teacher{i}@{url}" for i in range(args.teachers)]
    spec = DistillSpec.from_endpoints(
        teachers,
        fusor=f"fusor@{url}",
        endpoint_options={"max_concurrency": args.capacity},
    )
    clock = _Clock()
    cpu = time.process_time()
    summary = await adistill(
        prompts,
        workdir / "out.jsonl",
        spec,
        engine=args.engine,
        fsync=not args.no_fsync,
        progress=clock,
    )
    cpu = time.process_time() - cpu
    stats = summary.stats
    if stats.failed:
        first = json.loads(summary.errors.read_text().splitlines()[0])["error"]
        raise SystemExit(f"{stats.failed} rows failed, e.g.: {first['type']}: {first['message']}")
    return DistillRun(
        rows=stats.written,
        rows_per_s=stats.rows_per_s,
        first_record_s=clock.first - clock.begin,
        cpu_per_row_s=cpu / max(stats.written, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--teachers", type=int, default=3, help="teachers per row (N)")
    parser.add_argument("--capacity", type=int, default=32, help="server requests at once")
    parser.add_argument("--ttft", type=float, default=0.050)
    parser.add_argument("--tokens-per-s", type=float, default=500.0)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--engine", choices=("asyncio", "ray"), default="asyncio")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()

    server = ServerSpec(
        ttft_s=args.ttft,
        tokens_per_s=args.tokens_per_s,
        output_tokens=args.output_tokens,
        capacity=args.capacity,
    )
    calls_per_row = args.teachers + 1
    bound = args.capacity / (calls_per_row * server.call_s)
    with SimServers([server]) as servers, tempfile.TemporaryDirectory() as tmp:
        url = servers.base_urls[0]
        raw_requests = min(args.rows, 200) * calls_per_row
        raw = asyncio.run(measure_raw(url, raw_requests, 2 * args.capacity))
        run = asyncio.run(measure_distill(url, args, Path(tmp)))

    practical = raw / calls_per_row
    print(
        f"server: capacity {args.capacity}, call {server.call_s * 1000:.0f} ms "
        f"({args.ttft * 1000:.0f} ms ttft + {args.output_tokens} tok @ {args.tokens_per_s:g}/s); "
        f"row = {args.teachers} teachers + 1 fusor = {calls_per_row} calls"
    )
    print(f"capacity bound        {bound:8.1f} rows/s")
    print(f"raw server (measured) {practical:8.1f} rows/s  ({raw:.1f} requests/s)")
    who = "client" if args.engine == "asyncio" else "driver"
    print(f"distill ({args.engine})".ljust(22) + f"{run.rows_per_s:8.1f} rows/s  ({run.rows} rows)")
    print(f"  first record after  {run.first_record_s:8.2f} s")
    print(f"ratio to bound        {run.rows_per_s / bound:8.2f}")
    print(f"ratio to raw server   {run.rows_per_s / practical:8.2f}")
    print(f"{who} CPU per row    {run.cpu_per_row_s * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
