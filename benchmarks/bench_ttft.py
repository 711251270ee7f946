"""Fused time to first token, against the candidates' critical path + the fusor's TTFT.

One fusion at a time with the fusor's answer streamed (polyfuse: ``Fusion.astream`` and its
``FusedToken`` events; the peers: their streaming APIs). The ideal first token arrives after
one candidate call plus the fusor's time to first token. Target (issue #12): polyfuse's fused
TTFT ≤ ideal + 5 ms.

    .venv/bin/python benchmarks/bench_ttft.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import add_arguments, open_env
from benchmarks.harness.figures import best_peer, interleaved, label, ms, verdict
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker
from benchmarks.harness.stats import percentile


def main() -> None:
    """Parse options, measure, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--count", type=int, default=30, help="timed fusions per contender")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved chunks the count is split into"
    )
    parser.set_defaults(
        contenders="raw,polyfuse,polyfuse-fanout,openai-gather,langchain,llamaindex"
    )
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with open_env(args) as env:
        ideal = env.call_s + env.ttft_s

        def run(name: str, chunk: int) -> dict[str, Any]:
            return run_worker(
                name,
                env.workload,
                "ttft",
                {"count": chunk, "warmup": args.warmup},
                timeout_s=120 + chunk * 10,
                servers=env.servers,
            )

        results = interleaved(env.contenders, run, args.count, args.rounds)
        for name in env.contenders:
            result = results[name]
            row: dict[str, Any] = {"name": name, "label": label(name), "raw": result}
            if "error" not in result:
                ttft = result["ttft_s"]
                p50, p99 = percentile(ttft, 50), percentile(ttft, 99)
                assert p50 is not None and p99 is not None
                row.update(
                    ideal_ms=ms(ideal),
                    p50_ms=ms(p50),
                    p99_ms=ms(p99),
                    over_p50_ms=ms(p50 - ideal),
                    over_p99_ms=ms(p99 - ideal),
                    total_p50_ms=ms(percentile(result["latencies_s"], 50)),
                )
            else:
                row["error"] = result["error"]
            rows.append(row)
            print(f"  {name}: {row.get('over_p50_ms', row.get('error'))}", flush=True)
        described = env.describe()
    best = best_peer(rows, "over_p50_ms")
    floor = next((r.get("p50_ms") for r in rows if r["name"] == "raw"), None)
    for row in rows:
        row["over_floor_ms"] = (
            None if floor is None or row.get("p50_ms") is None else row["p50_ms"] - floor
        )
    columns = [
        ("contender", lambda r: r["label"]),
        ("ideal TTFT ms", lambda r: fmt(r.get("ideal_ms"), 0)),
        ("TTFT p50 ms", lambda r: fmt(r.get("p50_ms"))),
        ("TTFT p99 ms", lambda r: fmt(r.get("p99_ms"))),
        ("over ideal p50 ms", lambda r: fmt(r.get("over_p50_ms"))),
        ("over ideal p99 ms", lambda r: fmt(r.get("over_p99_ms"))),
        ("TTFT p50 − raw floor ms", lambda r: fmt(r.get("over_floor_ms"))),
        ("whole answer p50 ms", lambda r: fmt(r.get("total_p50_ms"), 0)),
        ("error", lambda r: r.get("error") or ""),
    ]
    table = markdown_table(rows, columns)
    lines: list[str] = []
    for name in ("polyfuse", "polyfuse-fanout"):
        row = next((r for r in rows if r["name"] == name), None)
        if row is not None:
            lines.append(
                verdict(
                    f"{label(name)} fused TTFT over ideal, p50 (ms)",
                    row.get("over_p50_ms"),
                    5.0,
                    at_most=True,
                )
            )
    if best is not None:
        lines.append(f"Best peer: {best:.1f} ms over ideal at p50.")
    plot = plot_path("ttft", not args.no_readme)
    shown = [r for r in rows if r.get("p50_ms") is not None]
    bars(
        plot,
        [r["label"] for r in shown],
        {
            "TTFT over ideal, p50": [r["over_p50_ms"] for r in shown],
            "TTFT over ideal, p99": [r["over_p99_ms"] for r in shown],
        },
        title="Fused time to first token: ms after (candidate call + fusor TTFT)",
        ylabel="ms",
        reference=(5.0, "target for polyfuse: +5 ms"),
    )
    publish(
        "ttft",
        f"Fused time to first token ({args.count} streamed fusions each, in {args.rounds} "
        "interleaved rounds)",
        table,
        {"env": described, "count": args.count, "rows": rows},
        plot=plot.name,
        verdict=lines,
        update_readme=not args.no_readme,
    )


if __name__ == "__main__":
    main()
