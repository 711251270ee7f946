"""Hedged calls against stragglers: fusion latency with 1 call in 5 ten times slower.

One fake OpenAI-compatible server (``polyfuse.testing``) on 127.0.0.1 answers every call in
``--ttft`` seconds plus ``--tokens`` tokens at ``--tokens-per-s``; with stragglers, every 5th
request (the fusor's included) is 10× slower. Fusions of ``--n`` streamed candidates plus the
fusor run one after another; three cases, each on a fresh server:

* ``no stragglers``: the baseline (its p50 is the reference);
* ``stragglers``: plain polyfuse;
* ``stragglers + hedge``: ``hedge={"after": --after, "budget": 0.25}``.

Target (issue #21): with hedging, p99 ≤ 1.3 × the no-straggler p50, at ≤ 25% extra calls.

    python benchmarks/adaptive_hedge.py --count 40
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from dataclasses import dataclass
from typing import Any

from polyfuse import FusionSpec, OpenAIEndpoint
from polyfuse.testing import FakeOpenAIServer, LatencyModel, serve


@dataclass(frozen=True)
class Case:
    """One measured case: fusion latencies and the calls the server received."""

    name: str
    latencies: list[float]
    requests: int
    fusions: int
    calls_per_fusion: int

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the latencies (inclusive method, as numpy's linear)."""
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    @property
    def extra_calls(self) -> float:
        """Calls beyond the ones a fusion needs, as a fraction of those."""
        needed = self.fusions * self.calls_per_fusion
        return self.requests / needed - 1


async def _measure(
    base_url: str, args: argparse.Namespace, hedge: dict[str, Any] | None
) -> list[float]:
    endpoint = OpenAIEndpoint(base_url, "fake-model", max_retries=0)
    try:
        spec = FusionSpec(
            pool=[endpoint],
            n=args.n,
            stream_candidates=True,
            hedge=hedge,
            params={"max_tokens": args.tokens},
        )
        fusion = spec.build()
        latencies: list[float] = []
        for _ in range(args.count):
            result = await fusion.arun("Why is the sky blue?")
            latencies.append(result.latency_s)
        return latencies
    finally:
        await endpoint.aclose()


def run_case(name: str, args: argparse.Namespace, *, stragglers: bool, hedge: bool) -> Case:
    """Serve a fresh fake and time ``args.count`` fusions."""
    latency = LatencyModel(
        ttft_s=args.ttft,
        tokens_per_s=args.tokens_per_s,
        output_tokens=args.tokens,
        straggler_every=5 if stragglers else 0,
        straggler_factor=10.0,
    )
    fake = FakeOpenAIServer(latency=latency, record=False)
    settings = {"after": args.after, "budget": 0.25} if hedge else None
    with serve(fake) as served:
        latencies = asyncio.run(_measure(served.base_url, args, settings))
        requests = fake.completed + fake.disconnects
    return Case(name, latencies, requests, args.count, args.n + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="fusions per case")
    parser.add_argument("--n", type=int, default=4, help="candidates per fusion")
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds to first token")
    parser.add_argument("--tokens", type=int, default=40, help="tokens per answer")
    parser.add_argument("--tokens-per-s", type=float, default=400.0)
    parser.add_argument("--after", type=float, default=0.08, help="hedge threshold (s)")
    args = parser.parse_args()
    cases = [
        run_case("no stragglers", args, stragglers=False, hedge=False),
        run_case("stragglers", args, stragglers=True, hedge=False),
        run_case("stragglers + hedge", args, stragglers=True, hedge=True),
    ]
    reference = cases[0].percentile(50)
    print("| case | p50 (s) | p99 (s) | p99 / no-straggler p50 | extra calls |")
    print("|---|---|---|---|---|")
    for case in cases:
        p99 = case.percentile(99)
        print(
            f"| {case.name} | {case.percentile(50):.3f} | {p99:.3f} | {p99 / reference:.2f}× | "
            f"{100 * case.extra_calls:.0f}% |"
        )


if __name__ == "__main__":
    main()
