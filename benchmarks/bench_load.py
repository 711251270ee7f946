"""Steady state under load: fusions/s and client CPU per fusion at several concurrency levels.

``C`` closed-loop workers per contender, each starting a new fusion when its last one ends,
for ``--duration`` seconds; fusions/s, CPU and latencies are taken over the window after
``--ramp`` seconds. The ideal rate is ``C / ideal latency`` (the server has no capacity limit).
Targets (issue #12): polyfuse's CPU per fusion ≤ ¼ of the best peer's at every load level, and
its fusions/s at 64 and 512 ≥ 4× the best peer's.

    .venv/bin/python benchmarks/bench_load.py                 # ~6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_load.py --levels 8,64 --duration 12 --ramp 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import Env, add_arguments, open_env
from benchmarks.harness.figures import best_peer, label, ms, verdict
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker
from benchmarks.harness.stats import percentile


def measure(env: Env, level: int, duration: float, ramp: float) -> list[dict[str, Any]]:
    """One row per contender at concurrency ``level``."""
    rows: list[dict[str, Any]] = []
    for name in env.contenders:
        workload = env.workload.with_(max_connections=max(64, level * env.workload.n))
        result = run_worker(
            name,
            workload,
            "load",
            {
                "concurrency": level,
                "duration_s": duration,
                "window_start_s": ramp,
                "warmup": 1,
                "server_pid": env.servers.pid if env.servers else None,
            },
            timeout_s=duration + 120,
            servers=env.servers,
        )
        ideal = env.ideal_s(name)
        row: dict[str, Any] = {"name": name, "label": label(name), "level": level, "raw": result}
        if "fusions_per_s" in result:
            row.update(
                rate=result["fusions_per_s"],
                ideal_rate=level / ideal,
                vs_ideal=result["fusions_per_s"] / (level / ideal),
                cpu_ms=ms(result["cpu_per_fusion_s"]),
                p50_ms=ms(percentile(result["latencies_s"], 50)),
                errors=result["errors"],
                server_cores=result.get("server_cores"),
                server_cpu_ms=ms(result["server_cpu_s"] / max(1, result["total_completed"]))
                if "server_cpu_s" in result
                else None,
            )
        else:
            row["error"] = result.get("error") or result.get("unavailable")
        rows.append(row)
        print(f"  c={level} {name}: {row.get('rate', row.get('error'))}", flush=True)
    return rows


def main() -> None:
    """Parse options, measure every level, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--levels", default="1,8,64,512", help="concurrency levels")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--ramp", type=float, default=3.0, help="seconds before the window")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    all_rows: list[dict[str, Any]] = []
    with open_env(args) as env:
        for level in levels:
            rows = measure(env, level, args.duration, args.ramp)
            best_cpu = best_peer(rows, "cpu_ms")
            best_rate = best_peer(rows, "rate", highest=True)
            for row in rows:
                row["cpu_vs_best"] = _ratio(row.get("cpu_ms"), best_cpu)
                row["rate_vs_best"] = _ratio(row.get("rate"), best_rate)
            all_rows += rows
        described = env.describe()
    columns = [
        ("concurrency", lambda r: r["level"]),
        ("contender", lambda r: r["label"]),
        ("fusions/s", lambda r: fmt(r.get("rate"))),
        ("ideal/s", lambda r: fmt(r.get("ideal_rate"))),
        ("rate / ideal", lambda r: fmt(r.get("vs_ideal"), 3)),
        ("rate / best peer", lambda r: fmt(r.get("rate_vs_best"), 2)),
        ("client CPU ms/fusion", lambda r: fmt(r.get("cpu_ms"), 2)),
        ("CPU / best peer", lambda r: fmt(r.get("cpu_vs_best"), 3)),
        ("latency p50 ms", lambda r: fmt(r.get("p50_ms"), 0)),
        ("server process CPU (cores)", lambda r: fmt(r.get("server_cores"), 2)),
        ("errors", lambda r: r.get("errors", r.get("error", ""))),
    ]
    table = markdown_table(all_rows, columns)
    lines: list[str] = []
    for level in levels:
        rows = [r for r in all_rows if r["level"] == level]
        best_cpu = best_peer(rows, "cpu_ms")
        best_rate = best_peer(rows, "rate", highest=True)
        for name in ("polyfuse", "polyfuse-fanout"):
            row = next((r for r in rows if r["name"] == name), None)
            if row is None:
                continue
            lines.append(
                verdict(
                    f"{label(name)} CPU per fusion at concurrency {level} (ms)",
                    row.get("cpu_ms"),
                    best_cpu / 4 if best_cpu else None,
                    at_most=True,
                )
            )
            if level >= 64:
                lines.append(
                    verdict(
                        f"{label(name)} fusions/s at concurrency {level} (steady state)",
                        row.get("rate"),
                        best_rate * 4 if best_rate else None,
                        at_most=False,
                    )
                )
    plot = plot_path("load", not args.no_readme)
    names = list(env.contenders)
    bars(
        plot,
        [f"c={lv}" for lv in levels],
        {
            label(n): [
                next(r.get("cpu_ms") for r in all_rows if r["name"] == n and r["level"] == lv)
                for lv in levels
            ]
            for n in names
        },
        title="Client CPU per fusion under load (steady state)",
        ylabel="ms of client CPU per fusion (log scale)",
        log=True,
    )
    rate_plot = plot_path("throughput", not args.no_readme)
    bars(
        rate_plot,
        [f"c={lv}" for lv in levels],
        {
            label(n): [
                next(r.get("rate") for r in all_rows if r["name"] == n and r["level"] == lv)
                for lv in levels
            ]
            for n in names
        },
        title="Fusions per second, steady state (ideal = concurrency / critical path)",
        ylabel="fusions/s (log scale)",
        log=True,
    )
    publish(
        "load",
        f"Steady state: fusions/s and client CPU per fusion ({args.duration:.0f}s runs, window "
        f"after {args.ramp:.0f}s)",
        table,
        {
            "env": described,
            "levels": levels,
            "duration_s": args.duration,
            "ramp_s": args.ramp,
            "rows": all_rows,
        },
        plot=plot.name,
        verdict=[*lines, f"Throughput plot: ![fusions/s]({rate_plot.name})"],
        update_readme=not args.no_readme,
    )


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


if __name__ == "__main__":
    main()
