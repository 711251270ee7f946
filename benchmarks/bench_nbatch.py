"""One ``n``-batched request vs N fanned-out requests, for the candidates.

The same fusion written both ways, for polyfuse (default: learns that the server honours
``n``; ``polyfuse-fanout``: told it does not), the official client (``n=N`` vs ``gather``) and
the raw-socket floor: latency at concurrency 1, and fusions/s, client CPU and *server* CPU per
fusion at ``--concurrency`` (steady state). The server's CPU matters on a real GPU server too:
an ``n``-batched request is parsed, tokenised and prefilled once.

    .venv/bin/python benchmarks/bench_nbatch.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import add_arguments, open_env
from benchmarks.harness.figures import label, ms
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker
from benchmarks.harness.stats import percentile

PAIRS = (("polyfuse", "polyfuse-fanout"), ("openai-n", "openai-gather"), ("raw-n", "raw"))


def main() -> None:
    """Parse options, measure both modes, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--count", type=int, default=20, help="fusions at concurrency 1")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=3.0)
    parser.set_defaults(contenders=",".join(name for pair in PAIRS for name in pair))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with open_env(args) as env:
        for name in env.contenders:
            single = run_worker(
                name,
                env.workload,
                "latency",
                {"count": args.count, "warmup": 3},
                timeout_s=120 + args.count * 10,
                servers=env.servers,
            )
            loaded = run_worker(
                name,
                env.workload.with_(max_connections=max(64, args.concurrency * env.workload.n)),
                "load",
                {
                    "concurrency": args.concurrency,
                    "duration_s": args.duration,
                    "window_start_s": args.ramp,
                    "warmup": 1,
                },
                timeout_s=args.duration + 120,
                servers=env.servers,
            )
            row: dict[str, Any] = {"name": name, "label": label(name), "single": single}
            row["loaded"] = loaded
            batched = name in {pair[0] for pair in PAIRS}
            row["requests"] = 2 if batched else env.workload.n + 1
            if "latencies_s" in single:
                row["p50_ms"] = ms(percentile(single["latencies_s"], 50))
                row["cpu1_ms"] = ms(single["cpu_s"] / single["fusions"])
            if "fusions_per_s" in loaded:
                row["rate"] = loaded["fusions_per_s"]
                row["cpu_ms"] = ms(loaded["cpu_per_fusion_s"])
                if "server_cpu_s" in loaded and loaded["total_completed"]:
                    row["server_cpu_ms"] = ms(loaded["server_cpu_s"] / loaded["total_completed"])
            row["error"] = single.get("error") or loaded.get("error") or single.get("unavailable")
            rows.append(row)
            print(f"  {name}: {row.get('rate', row.get('error'))}", flush=True)
        described = env.describe()
    columns = [
        ("contender", lambda r: r["label"]),
        ("requests per fusion", lambda r: r["requests"]),
        ("latency p50 ms (c=1)", lambda r: fmt(r.get("p50_ms"))),
        ("client CPU ms/fusion (c=1)", lambda r: fmt(r.get("cpu1_ms"), 2)),
        (f"fusions/s (c={args.concurrency})", lambda r: fmt(r.get("rate"))),
        (f"client CPU ms/fusion (c={args.concurrency})", lambda r: fmt(r.get("cpu_ms"), 2)),
        (f"server CPU ms/fusion (c={args.concurrency})", lambda r: fmt(r.get("server_cpu_ms"), 2)),
        ("error", lambda r: r.get("error") or ""),
    ]
    table = markdown_table(rows, columns)
    lines: list[str] = []
    for batched, fanned in PAIRS:
        a = next((r for r in rows if r["name"] == batched), None)
        b = next((r for r in rows if r["name"] == fanned), None)
        if a and b and a.get("rate") and b.get("rate") and a.get("server_cpu_ms"):
            lines.append(
                f"{label(batched)} vs {label(fanned)}: {a['rate'] / b['rate']:.2f}× the fusions/s, "
                f"{(a.get('cpu_ms') or 0) / (b.get('cpu_ms') or 1):.2f}× the client CPU and "
                f"{a['server_cpu_ms'] / (b.get('server_cpu_ms') or 1):.2f}× the server CPU per "
                "fusion."
            )
    plot = plot_path("nbatch", not args.no_readme)
    bars(
        plot,
        [r["label"] for r in rows],
        {
            f"client CPU ms/fusion (c={args.concurrency})": [r.get("cpu_ms") for r in rows],
            f"server CPU ms/fusion (c={args.concurrency})": [r.get("server_cpu_ms") for r in rows],
        },
        title=f"n-batched (one request for {described['n']} candidates) vs fanned out",
        ylabel="ms of CPU per fusion (log scale)",
        log=True,
    )
    publish(
        "nbatch",
        "One n-batched request vs N fanned-out requests",
        table,
        {"env": described, "count": args.count, "concurrency": args.concurrency, "rows": rows},
        plot=plot.name,
        verdict=lines,
        update_readme=not args.no_readme,
    )


if __name__ == "__main__":
    main()
