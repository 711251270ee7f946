"""Fusion latency on the embedded model (SmolLM2-135M, llama.cpp on the CPU).

For each question, in the same run and on the same server, the script measures:

1. ``single``: one plain call (what you would wait for without fusion);
2. ``fusion``: N candidates sampled at once (continuous batching over N + 1 slots) plus one
   fusor call, through :class:`polyfuse.Fusion` — the same path ``polyfuse ask`` takes;

and prints JSON, then a table: median latencies, the fusion/single ratio, where a fusion's time
goes (candidates phase vs. the fusor call) and the tokens it produced. Single calls and fusions
alternate, so machine load hits both alike; the load average is printed with the results.

Run::

    .venv/bin/python benchmarks/local_fusion.py
    .venv/bin/python benchmarks/local_fusion.py --n 5 --rounds 10 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

from polyfuse import ChatRequest, Fuse, Fusion, OpenAIEndpoint, Pool
from polyfuse.local import LocalModel

QUESTIONS = [
    "Why is the sky blue?",
    "What causes the seasons on Earth?",
    "Name three uses of copper.",
    "What is photosynthesis?",
    "Why do we have leap years?",
]


@dataclass
class Sample:
    """One round: a single call and one fusion of the same question."""

    question: str
    single_s: float
    fusion_s: float
    candidates_s: float
    fusor_s: float
    fusion_tokens: int
    single_tokens: int


async def one_round(
    endpoint: OpenAIEndpoint, fusion: Fusion, question: str, params: dict
) -> Sample:
    """Time a single call, then a fusion, of ``question``."""
    request = ChatRequest.build(question, **params)
    started = time.perf_counter()
    [single] = await endpoint.complete(request)
    single_s = time.perf_counter() - started

    started = time.perf_counter()
    result = await fusion.arun(question, **params)
    fusion_s = time.perf_counter() - started
    candidates_s = max((c.latency_s or 0.0) for c in result.candidates)
    fusor_s = sum(call.latency_s or 0.0 for call in result.aggregation.calls)
    return Sample(
        question=question,
        single_s=single_s,
        fusion_s=fusion_s,
        candidates_s=candidates_s,
        fusor_s=fusor_s,
        fusion_tokens=result.usage.total.completion_tokens,
        single_tokens=single.usage.completion_tokens,
    )


async def run(n: int, rounds: int, max_tokens: int, threads: int | None) -> dict:
    """Start the model, warm it up, time ``rounds`` rounds; return the summary."""
    started = time.perf_counter()
    async with LocalModel(slots=n + 1, threads=threads, show_progress=True) as local:
        start_s = time.perf_counter() - started
        endpoint = local.endpoint()
        fusion = Fusion(Pool.repeat(endpoint, n), Fuse(endpoint))
        params = {"max_tokens": max_tokens, "temperature": 0.8}
        await endpoint.complete(ChatRequest.build("Hello!", max_tokens=8))  # warm-up
        samples = [
            await one_round(endpoint, fusion, QUESTIONS[i % len(QUESTIONS)], params)
            for i in range(rounds)
        ]
        await fusion.aclose()
        threads_used = local.threads

    def median(key: str) -> float:
        return statistics.median(getattr(s, key) for s in samples)

    single, fused = median("single_s"), median("fusion_s")
    return {
        "model": "SmolLM2-135M-Instruct Q4_1 (llama.cpp via xllamacpp)",
        "n": n,
        "rounds": rounds,
        "max_tokens": max_tokens,
        "threads": threads_used,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "server_start_s": start_s,
        "median_single_s": single,
        "median_fusion_s": fused,
        "fusion_over_single": fused / single,
        "median_candidates_phase_s": median("candidates_s"),
        "median_fusor_s": median("fusor_s"),
        "median_fusion_completion_tokens": median("fusion_tokens"),
        "median_single_completion_tokens": median("single_tokens"),
        "samples": [asdict(s) for s in samples],
    }


def print_table(summary: dict) -> None:
    """The headline numbers as a small table."""
    rows = [
        ("single call (median)", f"{summary['median_single_s']:.2f} s"),
        (f"fusion N={summary['n']} + fusor (median)", f"{summary['median_fusion_s']:.2f} s"),
        ("  candidates phase", f"{summary['median_candidates_phase_s']:.2f} s"),
        ("  fusor call", f"{summary['median_fusor_s']:.2f} s"),
        ("fusion / single", f"{summary['fusion_over_single']:.2f}x"),
        (
            "completion tokens: fusion / single",
            (
                f"{summary['median_fusion_completion_tokens']:.0f} / "
                f"{summary['median_single_completion_tokens']:.0f}"
            ),
        ),
        ("server start", f"{summary['server_start_s']:.2f} s"),
        (
            "threads / cpus / load (1 min)",
            (f"{summary['threads']} / {summary['cpus']} / {summary['load_average_1m']:.1f}"),
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3, help="candidates per fusion")
    parser.add_argument("--rounds", type=int, default=5, help="single calls and fusions each")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    args = parser.parse_args()
    summary = asyncio.run(run(args.n, args.rounds, args.max_tokens, args.threads))
    print(json.dumps(summary, indent=2))
    print()
    print_table(summary)


if __name__ == "__main__":
    main()
