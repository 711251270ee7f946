"""One fusion per worker: C fusions started at once; time until all are done, and peak RSS.

Each contender runs in a fresh process (its imports count: that is what a user pays), opens
its clients, does one warm-up fusion, then starts ``C`` fusions at once and waits up to
``--timeout`` seconds. Fusions/s = C / time to finish all. Peak RSS is the process's high-water
mark with C fusions in flight. Targets (issue #12): ≥ 4× the best peer's fusions/s at 64 and
512 with every fusion completed; peak RSS at 512 in flight ≤ ½ of the best peer's.

    .venv/bin/python benchmarks/bench_burst.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import add_arguments, open_env
from benchmarks.harness.figures import best_peer, label, verdict
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker


def main() -> None:
    """Parse options, measure every level, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--levels", default="64,512", help="fusions started at once")
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for all")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rows: list[dict[str, Any]] = []
    with open_env(args) as env:
        for level in levels:
            for name in env.contenders:
                workload = env.workload.with_(max_connections=max(64, level * env.workload.n))
                result = run_worker(
                    name,
                    workload,
                    "burst",
                    {"concurrency": level, "timeout_s": args.timeout, "warmup": 1},
                    timeout_s=args.timeout + 120,
                    servers=env.servers,
                )
                row: dict[str, Any] = {
                    "name": name,
                    "label": label(name),
                    "level": level,
                    "raw": result,
                    "ideal_rate": level / env.ideal_s(name),
                }
                if "completed" in result:
                    row.update(
                        rate=result["fusions_per_s"],
                        completed=result["completed"],
                        finished=result["finished"],
                        elapsed_s=result["elapsed_s"],
                        cpu_ms=None
                        if result["cpu_per_fusion_s"] is None
                        else result["cpu_per_fusion_s"] * 1000,
                        rss_mb=result["peak_rss_mb"],
                        rss_open_mb=result["rss_open_mb"],
                    )
                else:
                    row["error"] = result.get("error") or result.get("unavailable")
                rows.append(row)
                print(f"  c={level} {name}: {row.get('rate', row.get('error'))}", flush=True)
        described = env.describe()
    lines: list[str] = []
    for level in levels:
        at = [r for r in rows if r["level"] == level]
        # A peer that did not finish in time would have needed more than the timeout: its
        # rate is below level / elapsed, which bounds the best peer's rate from above.
        for row in at:
            if row.get("rate") is None and "elapsed_s" in row:
                row["rate_bound"] = level / row["elapsed_s"]
        best_rate = best_peer(at, "rate", highest=True)
        bound = best_peer(at, "rate_bound", highest=True)
        if bound is not None and (best_rate is None or bound > best_rate):
            best_rate = bound
            lines.append(
                f"At {level} at once, no peer finished within {args.timeout:.0f}s: the best peer "
                f"rate is taken as its upper bound, {bound:.1f}/s ({level} / time waited)."
            )
        best_rss = best_peer(at, "rss_mb")
        for row in at:
            row["rate_vs_best"] = (
                None if not best_rate or not row.get("rate") else row["rate"] / best_rate
            )
            row["rss_vs_best"] = (
                None if not best_rss or not row.get("rss_mb") else row["rss_mb"] / best_rss
            )
        for name in ("polyfuse", "polyfuse-fanout"):
            row = next((r for r in at if r["name"] == name), None)
            if row is None:
                continue
            lines.append(
                verdict(
                    f"{label(name)} fusions/s, {level} at once (all must finish)",
                    row.get("rate"),
                    best_rate * 4 if best_rate else None,
                    at_most=False,
                )
                + ("" if row.get("finished") else " (not every fusion finished)")
            )
            if level == max(levels):
                lines.append(
                    verdict(
                        f"{label(name)} peak RSS with {level} in flight (MB)",
                        row.get("rss_mb"),
                        best_rss / 2 if best_rss else None,
                        at_most=True,
                    )
                )
    columns = [
        ("at once", lambda r: r["level"]),
        ("contender", lambda r: r["label"]),
        ("all done", lambda r: fmt(r.get("finished")) if "finished" in r else "–"),
        ("completed", lambda r: r.get("completed", "–")),
        ("seconds", lambda r: fmt(r.get("elapsed_s"), 2)),
        ("fusions/s", lambda r: fmt(r.get("rate")) if r.get("rate") else _bound(r)),
        ("ideal/s", lambda r: fmt(r.get("ideal_rate"))),
        ("rate / best peer", lambda r: fmt(r.get("rate_vs_best"), 2)),
        ("client CPU ms/fusion", lambda r: fmt(r.get("cpu_ms"), 2)),
        ("RSS after open MB", lambda r: fmt(r.get("rss_open_mb"), 0)),
        ("peak RSS MB", lambda r: fmt(r.get("rss_mb"), 0)),
        ("RSS / best peer", lambda r: fmt(r.get("rss_vs_best"), 2)),
        ("error", lambda r: r.get("error") or ""),
    ]
    table = markdown_table(rows, columns)
    plot = plot_path("memory", not args.no_readme)
    top = [r for r in rows if r["level"] == max(levels)]
    bars(
        plot,
        [r["label"] for r in top],
        {
            "RSS after open": [r.get("rss_open_mb") for r in top],
            f"peak RSS, {max(levels)} in flight": [r.get("rss_mb") for r in top],
        },
        title=f"Memory with {max(levels)} fusions in flight (each contender in its own process)",
        ylabel="MB",
    )
    publish(
        "burst",
        f"One fusion per worker: fusions/s with C started at once, peak RSS (timeout "
        f"{args.timeout:.0f}s)",
        table,
        {"env": described, "levels": levels, "timeout_s": args.timeout, "rows": rows},
        plot=plot.name,
        verdict=lines,
        update_readme=not args.no_readme,
    )


def _bound(row: dict[str, Any]) -> str:
    return f"< {row['rate_bound']:.1f}" if row.get("rate_bound") else "–"


if __name__ == "__main__":
    main()
