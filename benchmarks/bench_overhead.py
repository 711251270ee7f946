"""Overhead over the critical path at concurrency 1, and client CPU per fusion.

One fusion at a time (N candidates, then the fusor), ``--count`` timed fusions per contender
after ``--warmup``. The ideal is the critical path: one candidate call plus one fusor call
(three calls for optillm's moa). Overhead = latency − ideal. Targets (issue #12): polyfuse's
overhead p50 and p99 ≤ ¼ of the best peer's; its CPU per fusion ≤ ¼ of the best peer's.

    .venv/bin/python benchmarks/bench_overhead.py
    .venv/bin/python benchmarks/bench_overhead.py --base-url http://gpu-box:8000/v1 --model qwen
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import Env, add_arguments, open_env
from benchmarks.harness.figures import best_peer, interleaved, label, ms, verdict
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker
from benchmarks.harness.stats import percentile


def measure(env: Env, count: int, warmup: int, rounds: int) -> list[dict[str, Any]]:
    """Every contender's latency series, in interleaved rounds; one row per contender."""

    def run(name: str, chunk: int) -> dict[str, Any]:
        return run_worker(
            name,
            env.workload,
            "latency",
            {"count": chunk, "warmup": warmup},
            timeout_s=120 + chunk * 10,
            servers=env.servers,
        )

    results = interleaved(env.contenders, run, count, rounds)
    rows: list[dict[str, Any]] = []
    for name in env.contenders:
        result = results[name]
        row: dict[str, Any] = {"name": name, "label": label(name), "raw": result}
        if "error" not in result:
            lat = result["latencies_s"]
            ideal = env.ideal_s(name)
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            assert p50 is not None and p99 is not None
            fusions_run = result["fusions"] + warmup * result["chunks"]
            row.update(
                ideal_ms=ms(ideal),
                p50_ms=ms(p50),
                p99_ms=ms(p99),
                over_p50_ms=ms(p50 - ideal),
                over_p99_ms=ms(p99 - ideal),
                vs_ideal=p50 / ideal,
                cpu_ms=ms(result["cpu_s"] / result["fusions"]),
                server_cpu_ms=ms(result["server_cpu_s"] / fusions_run)
                if "server_cpu_s" in result
                else None,
                rss_mb=result.get("peak_rss_mb"),
            )
        else:
            row["error"] = result["error"]
        rows.append(row)
        print(f"  {name}: {row.get('over_p50_ms', row.get('error'))}", flush=True)
    return rows


def main() -> None:
    """Parse options, measure, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--count", type=int, default=45, help="timed fusions per contender")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved chunks the count is split into"
    )
    args = parser.parse_args()
    with open_env(args) as env:
        rows = measure(env, args.count, args.warmup, args.rounds)
        described = env.describe()
    best_p50 = best_peer(rows, "over_p50_ms")
    best_p99 = best_peer(rows, "over_p99_ms")
    best_cpu = best_peer(rows, "cpu_ms")
    floor = next((r.get("p50_ms") for r in rows if r["name"] == "raw"), None)
    for row in rows:
        row["over_floor_ms"] = (
            None if floor is None or row.get("p50_ms") is None else row["p50_ms"] - floor
        )
        row["over_p50_vs_best"] = _ratio(row.get("over_p50_ms"), best_p50)
        row["cpu_vs_best"] = _ratio(row.get("cpu_ms"), best_cpu)
    columns = [
        ("contender", lambda r: r["label"]),
        ("ideal ms", lambda r: fmt(r.get("ideal_ms"), 0)),
        ("p50 ms", lambda r: fmt(r.get("p50_ms"))),
        ("p99 ms", lambda r: fmt(r.get("p99_ms"))),
        ("overhead p50 ms", lambda r: fmt(r.get("over_p50_ms"))),
        ("overhead p99 ms", lambda r: fmt(r.get("over_p99_ms"))),
        ("p50 − raw floor p50 ms", lambda r: fmt(r.get("over_floor_ms"))),
        ("p50 / ideal", lambda r: fmt(r.get("vs_ideal"), 3)),
        ("overhead p50 / best peer", lambda r: fmt(r.get("over_p50_vs_best"), 2)),
        ("client CPU ms/fusion", lambda r: fmt(r.get("cpu_ms"), 2)),
        ("CPU / best peer", lambda r: fmt(r.get("cpu_vs_best"), 3)),
        ("server CPU ms/fusion", lambda r: fmt(r.get("server_cpu_ms"), 2)),
        ("error", lambda r: r.get("error") or ""),
    ]
    table = markdown_table(rows, columns)
    poly = next((r for r in rows if r["name"] == "polyfuse"), {})
    fan = next((r for r in rows if r["name"] == "polyfuse-fanout"), {})
    lines = [
        verdict(
            "polyfuse overhead p50 (ms)",
            poly.get("over_p50_ms"),
            best_p50 / 4 if best_p50 else None,
            at_most=True,
        ),
        verdict(
            "polyfuse overhead p99 (ms)",
            poly.get("over_p99_ms"),
            best_p99 / 4 if best_p99 else None,
            at_most=True,
        ),
        verdict(
            "polyfuse (fan-out) overhead p50 (ms)",
            fan.get("over_p50_ms"),
            best_p50 / 4 if best_p50 else None,
            at_most=True,
        ),
        verdict(
            "polyfuse client CPU per fusion at concurrency 1 (ms)",
            poly.get("cpu_ms"),
            best_cpu / 4 if best_cpu else None,
            at_most=True,
        ),
        verdict(
            "polyfuse (fan-out) client CPU per fusion at concurrency 1 (ms)",
            fan.get("cpu_ms"),
            best_cpu / 4 if best_cpu else None,
            at_most=True,
        ),
    ]
    plot = plot_path("overhead", not args.no_readme)
    shown = [r for r in rows if r.get("over_p50_ms") is not None]
    bars(
        plot,
        [r["label"] for r in shown],
        {
            "overhead p50": [r["over_p50_ms"] for r in shown],
            "overhead p99": [r["over_p99_ms"] for r in shown],
            "client CPU per fusion": [r["cpu_ms"] for r in shown],
        },
        title=f"Concurrency 1, N={env.workload.n}: milliseconds over the critical path",
        ylabel="ms (log scale)",
        log=True,
    )
    publish(
        "overhead",
        f"Overhead over the critical path and client CPU at concurrency 1 ({args.count} fusions "
        f"each, in {args.rounds} interleaved rounds)",
        table,
        {
            "env": described,
            "count": args.count,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "rows": rows,
        },
        plot=plot.name,
        verdict=lines,
        update_readme=not args.no_readme,
    )


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


if __name__ == "__main__":
    main()
