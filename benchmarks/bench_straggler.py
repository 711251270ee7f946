"""The straggler case: 1 of N candidates is 10× slower.

Two simulated endpoints in one server process: the normal one and one ``--factor`` times slower
(time to first token and per-token time both scaled). Candidates 1..N-1 go to the normal one,
candidate N to the slow one; the fusor is on the normal one. Every contender also runs with no
straggler (all candidates on the normal endpoint), in the same run. polyfuse runs with
``QuorumPolicy(quorum=N-1)``: it fuses the first N-1 candidates and cancels the straggler;
the peers have no quorum and wait. Target (issue #12): polyfuse's p99 with the straggler
≤ 1.2 × its no-straggler p50.

    .venv/bin/python benchmarks/bench_straggler.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.env import add_arguments, open_env
from benchmarks.harness.figures import label, ms, verdict
from benchmarks.harness.plots import bars
from benchmarks.harness.report import fmt, markdown_table, plot_path, publish
from benchmarks.harness.runner import run_worker
from benchmarks.harness.simserver import ServerSpec
from benchmarks.harness.stats import percentile
from benchmarks.harness.workload import Workload

QUORUM_CONTENDERS = ("polyfuse",)


def main() -> None:
    """Parse options, measure both cases for every contender, publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--count", type=int, default=12, help="timed fusions per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--factor", type=float, default=10.0, help="how much slower")
    parser.add_argument(
        "--slow-url", help="with --base-url: the straggler endpoint (required there)"
    )
    parser.set_defaults(
        contenders="raw,polyfuse,polyfuse-fanout,openai-gather,langchain,llamaindex"
    )
    args = parser.parse_args()
    fast = ServerSpec(
        ttft_s=args.ttft,
        tokens_per_s=args.tokens_per_s,
        output_tokens=args.tokens,
        jitter=args.jitter,
        seed=args.seed,
        model=args.model,
    )
    slow = fast.slower(args.factor)
    if args.base_url and not args.slow_url:
        raise SystemExit("--base-url needs --slow-url (an endpoint that is the straggler)")
    rows: list[dict[str, Any]] = []
    with open_env(args, fast, slow) as env:
        fast_url = env.workload.fusor_url
        slow_url = args.slow_url or (env.servers.base_urls[1] if env.servers else fast_url)
        n = env.workload.n
        straggling = env.workload.with_(candidate_urls=(fast_url,) * (n - 1) + (slow_url,))
        calm = env.workload.with_(candidate_urls=(fast_url,) * n)
        slow_call = slow.call_s if env.servers else None
        for case, workload in (("no straggler", calm), ("1 straggler", straggling)):
            for name in env.contenders:
                quorum = n - 1 if name in QUORUM_CONTENDERS else None
                result = run_worker(
                    name,
                    workload.with_(quorum=quorum),
                    "latency",
                    {"count": args.count, "warmup": args.warmup},
                    timeout_s=120 + args.count * 30,
                    servers=env.servers,
                )
                row: dict[str, Any] = {
                    "name": name,
                    "label": label(name) + (f", quorum={quorum}" if quorum else ""),
                    "case": case,
                    "raw": result,
                }
                if "latencies_s" in result:
                    lat = result["latencies_s"]
                    row.update(
                        p50_ms=ms(percentile(lat, 50)),
                        p99_ms=ms(percentile(lat, 99)),
                        cpu_ms=ms(result["cpu_s"] / result["fusions"]),
                    )
                else:
                    row["error"] = result.get("error") or result.get("unavailable")
                rows.append(row)
                print(f"  {case} {name}: {row.get('p50_ms', row.get('error'))}", flush=True)
        described = env.describe()
        ideal_ms = ms(env.ideal_s("polyfuse"))
        wait_ms = ms(slow_call + env.fusor_call_s) if slow_call else None
    calm_p50 = {r["name"]: r.get("p50_ms") for r in rows if r["case"] == "no straggler"}
    for row in rows:
        base = calm_p50.get(row["name"])
        row["vs_calm_p50"] = None if not base or not row.get("p99_ms") else row["p99_ms"] / base
    columns = [
        ("case", lambda r: r["case"]),
        ("contender", lambda r: r["label"]),
        ("p50 ms", lambda r: fmt(r.get("p50_ms"), 0)),
        ("p99 ms", lambda r: fmt(r.get("p99_ms"), 0)),
        ("p99 / own no-straggler p50", lambda r: fmt(r.get("vs_calm_p50"), 2)),
        ("client CPU ms/fusion", lambda r: fmt(r.get("cpu_ms"), 2)),
        ("error", lambda r: r.get("error") or ""),
    ]
    table = markdown_table(rows, columns)
    poly = next((r for r in rows if r["name"] == "polyfuse" and r["case"] == "1 straggler"), {})
    lines = [
        f"Critical path without the straggler: {fmt(ideal_ms, 0)} ms; waiting for the straggler "
        f"costs at least {fmt(wait_ms, 0)} ms.",
        verdict(
            "polyfuse (quorum) p99 with a straggler / its no-straggler p50",
            poly.get("vs_calm_p50"),
            1.2,
            at_most=True,
        ),
    ]
    plot = plot_path("straggler", not args.no_readme)
    names = list(dict.fromkeys(r["name"] for r in rows))
    labels = [next(r["label"] for r in rows if r["name"] == n) for n in names]

    def values(case: str, key: str) -> list[float | None]:
        return [
            next((r.get(key) for r in rows if r["name"] == n and r["case"] == case), None)
            for n in names
        ]

    bars(
        plot,
        labels,
        {
            "p50, no straggler": values("no straggler", "p50_ms"),
            "p50, 1 straggler": values("1 straggler", "p50_ms"),
            "p99, 1 straggler": values("1 straggler", "p99_ms"),
        },
        title=f"1 of {n} candidates {args.factor:g}× slower: fusion latency",
        ylabel="ms",
        reference=(ideal_ms, "critical path without the straggler") if ideal_ms else None,
    )
    publish(
        "straggler",
        f"Straggler: 1 of {n} candidates {args.factor:g}× slower ({args.count} fusions per case)",
        table,
        {
            "env": described,
            "count": args.count,
            "factor": args.factor,
            "workloads": {
                "calm": Workload.to_json(calm),
                "straggling": Workload.to_json(straggling),
            },
            "rows": rows,
        },
        plot=plot.name,
        verdict=lines,
        update_readme=not args.no_readme,
    )


if __name__ == "__main__":
    main()
