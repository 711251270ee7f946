"""``polyfuse eval`` benchmarks: replaying a recorded pool, and a live eval against a simulated
server's capacity bound.

``replay``: read the ZeroEval GSM8K pool (1,319 prompts x 12 models), grade every candidate, and
majority-vote over every panel size 1-12 (strongest models first) with a bootstrap CI each.
Target: under 10 s on 2 cores. The path is an argument: the project ships no data::

    .venv/bin/python benchmarks/eval_throughput.py replay \
        /work/shared/data/pools/zeroeval-gsm8k/gsm_responses_12models.jsonl.gz

``live``: ``polyfuse.eval.aevaluate`` with strategies single, vote and fuse (3 teachers + 1
fusor call per prompt) against the simulated server (``benchmarks/harness``), compared with the
capacity bound and with what the server delivers to a raw HTTP client, as
``distill_throughput.py`` does for distill. Target: >= 0.9 of the server-bound rate::

    .venv/bin/python benchmarks/eval_throughput.py live --rows 400 --capacity 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.distill_throughput import measure_raw  # noqa: E402
from benchmarks.harness.simserver import ServerSpec, SimServers  # noqa: E402

from polyfuse.eval import aevaluate, grade_pool, panel_sweep, read_zeroeval  # noqa: E402


def replay(path: Path, resamples: int) -> None:
    """Time the replay sweep and print each panel size's vote accuracy."""
    started = time.perf_counter()
    cpu = time.process_time()
    entries = read_zeroeval(path)
    read_s = time.perf_counter() - started
    graded = asyncio.run(grade_pool(entries))
    graded_s = time.perf_counter() - started
    results = panel_sweep(graded, resamples=resamples)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu
    candidates = sum(len(e.candidates) for e in entries)
    print(f"{len(entries)} prompts x {len(graded.models)} models = {candidates} candidates")
    print(f"read {read_s:.2f} s, grade {graded_s - read_s:.2f} s, sweep {total - graded_s:.2f} s")
    print(f"total {total:.2f} s wall, {cpu:.2f} s CPU (target: under 10 s)")
    for r in results:
        print(
            f"  size {r.size:2d}: vote {100 * r.vote.mean:5.1f}% "
            f"(95% CI {100 * r.vote.low:.1f}-{100 * r.vote.high:.1f}), "
            f"best member {100 * r.best_single:.1f}%, some member right {100 * r.oracle:.1f}%"
        )


def _presets(url: str, teachers: int, capacity: int) -> dict[str, object]:
    names = [f"teacher{i}" for i in range(teachers)]
    endpoints = {
        name: {"base_url": url, "model": name, "max_concurrency": capacity}
        for name in [*names, "fusor"]
    }
    return {"endpoints": endpoints, "presets": {"bench": {"pool": names, "n": 1, "fusor": "fusor"}}}


def live(args: argparse.Namespace) -> None:
    """Live eval rows/s against the server's bound."""
    server = ServerSpec(capacity=args.capacity)
    calls_per_row = args.teachers + 1
    bound = args.capacity / (calls_per_row * server.call_s)
    with SimServers([server]) as servers, tempfile.TemporaryDirectory() as tmp:
        url = servers.base_urls[0]
        raw = asyncio.run(measure_raw(url, min(args.rows, 200) * calls_per_row, 2 * args.capacity))
        data = Path(tmp) / "rows.jsonl"
        data.write_text(
            "".join(
                json.dumps({"prompt": f"What is {i} + {i}?", "gold": str(2 * i)}) + "\n"
                for i in range(args.rows)
            )
        )
        cpu = time.process_time()
        result = asyncio.run(
            aevaluate(
                data,
                Path(tmp) / "out",
                strategies="single,vote,fuse",
                config=_presets(url, args.teachers, args.capacity),
                preset="bench",
                fsync=not args.no_fsync,
            )
        )
        cpu = time.process_time() - cpu
    stats = result.generation.summary.stats
    practical = raw / calls_per_row
    print(f"capacity bound        {bound:8.1f} rows/s ({calls_per_row} calls per row)")
    print(f"raw server (measured) {practical:8.1f} rows/s")
    print(f"eval generation       {stats.rows_per_s:8.1f} rows/s ({stats.written} rows)")
    print(f"ratio to bound        {stats.rows_per_s / bound:8.2f}")
    print(f"ratio to raw server   {stats.rows_per_s / practical:8.2f}")
    print(f"client CPU per row    {1000 * cpu / max(stats.written, 1):8.1f} ms (whole eval)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rep = sub.add_parser("replay", help="replay sweep over a ZeroEval pool")
    rep.add_argument("pools", type=Path)
    rep.add_argument("--resamples", type=int, default=2000)
    liv = sub.add_parser("live", help="live eval against the simulated server")
    liv.add_argument("--rows", type=int, default=400)
    liv.add_argument("--teachers", type=int, default=3)
    liv.add_argument("--capacity", type=int, default=32)
    liv.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    if args.what == "replay":
        replay(args.pools, args.resamples)
    else:
        live(args)


if __name__ == "__main__":
    main()
