"""Fuse N answers from any OpenAI-compatible endpoint.

    python examples/fuse_endpoint.py --base-url http://127.0.0.1:8000/v1 --model qwen \
        --n 5 "Explain why the sky is blue in two sentences."

The API key, if the server needs one, is read from $POLYFUSE_API_KEY (as in every example
and the CLI). Prints the fused answer
as it streams, then every candidate, who contributed, and usage by role.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from polyfuse import (
    CandidateFailed,
    CandidateFinished,
    FusedToken,
    Fusion,
    FusionDone,
    FusionResult,
    OpenAIEndpoint,
    Pool,
    QuorumPolicy,
)


async def fuse(
    base_url: str,
    model: str,
    question: str,
    *,
    n: int = 5,
    temperature: float = 0.8,
    quorum: int | None = None,
    api_key: str | None = None,
    quiet: bool = False,
) -> FusionResult:
    """Sample ``n`` answers from the endpoint, fuse them with the same model, return the result."""
    endpoint = OpenAIEndpoint(base_url, model, api_key=api_key)
    fusion = Fusion(Pool.repeat(endpoint, n), policy=QuorumPolicy(quorum=quorum))
    result: FusionResult | None = None
    async with fusion:
        async for event in fusion.astream(question, temperature=temperature):
            if isinstance(event, FusionDone):
                result = event.result
            elif not quiet:
                _show(event)
    assert result is not None
    return result


def _show(event: object) -> None:
    if isinstance(event, CandidateFinished):
        print(f"[candidate #{event.candidate.index} in {event.candidate.latency_s:.2f}s]")
    elif isinstance(event, CandidateFailed):
        print(f"[candidate #{event.candidate.index} {event.candidate.status}]")
    elif isinstance(event, FusedToken):
        print(event.delta, end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("question")
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--quorum", type=int, default=None, help="fuse once this many are in")
    args = parser.parse_args()
    result = asyncio.run(
        fuse(
            args.base_url,
            args.model,
            args.question,
            n=args.n,
            temperature=args.temperature,
            quorum=args.quorum,
            api_key=os.environ.get("POLYFUSE_API_KEY"),
        )
    )
    print("\n")
    for candidate in result.candidates:
        share = (result.aggregation.contributions or {}).get(candidate.index)
        shown = candidate.text.replace("\n", " ")[:70] if candidate.ok else candidate.error
        print(f"#{candidate.index} {candidate.status:9} contributed={share} {shown}")
    total = result.usage.total
    print(
        f"usage: {total.total_tokens} tokens in {total.calls} calls "
        f"(candidates {result.usage.candidates.total_tokens}, fusor {result.usage.aggregator.total_tokens})"
    )


if __name__ == "__main__":
    main()
