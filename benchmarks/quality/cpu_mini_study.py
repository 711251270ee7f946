"""A CPU-only slice of the quality study: GSM8K questions, an embedded model, every strategy
over the same candidates.

For each question the model is asked once greedily (``single-t0``) and N times at T=0.8 (the
pool; ``single`` is its first sample). Every aggregator then works on that *same* pool: majority
vote over the last number, Best-of-N with the model as judge, USC, fusion and (optional, it costs
N more long calls) Mixture-of-Agents; aggregators sample at T=0. ``oracle`` is "some candidate
is right", the ceiling of any selection. Answers are graded by their last number against the
gold answer after ``####``.

This is not ``polyfuse eval`` (the study proper uses it; see ``README.md``): it is a small,
resumable script to read what a 1.5B model can and cannot do on a CPU. One JSON line per
question goes to ``--out``; rerunning skips the questions already there; ``--summary`` prints
the table (accuracy with a Wilson 95% interval, tokens per question per strategy).

Usage::

    python benchmarks/quality/cpu_mini_study.py --data /work/shared/data/eval/gsm8k/test.jsonl \\
        --model qwen2.5-coder-1.5b --questions 10 --out benchmarks/quality/results/cpu.jsonl
    python benchmarks/quality/cpu_mini_study.py --summary benchmarks/quality/results/cpu.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from polyfuse import BestOfN, Fuse, Fusion, LLMJudge, MajorityVote, Pool
from polyfuse.aggregators import MixtureOfAgents, UniversalSelfConsistency
from polyfuse.aggregators.base import AggregationContext, Aggregator
from polyfuse.backends import Backend
from polyfuse.local import LOCAL_MODELS, LocalModel
from polyfuse.messages import ChatRequest, SamplingParams
from polyfuse.results import Candidate

PROMPT = (
    "Solve this grade-school math problem. Think step by step, briefly, then finish with a "
    "line of the form 'The answer is N.'\n\n{question}"
)
STRATEGIES = ("single-t0", "single", "vote", "best-of-n", "usc", "fuse", "moa", "oracle")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number in ``text``, without thousands separators or a trailing ``.0``."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    value = found[-1].replace(",", "").rstrip(".")
    return value[:-2] if value.endswith(".0") else value


def gold_of(answer: str) -> str:
    """GSM8K's gold number: what follows ``####``."""
    value = last_number(answer.split("####")[-1])
    assert value is not None, answer
    return value


def _tokens(candidates: list[Candidate]) -> int:
    return sum(c.usage.total_tokens for c in candidates)


async def _aggregate(
    aggregator: Aggregator, request: ChatRequest, pool: Pool, candidates: list[Candidate]
) -> tuple[str, int]:
    started = AggregationContext(request=request, candidates=candidates, pool=pool)
    result = await aggregator.aggregate(started)
    tokens = sum(call.usage.total_tokens for call in result.record.calls)
    return result.message.content or "", tokens


async def study_question(
    endpoint: Backend, question: str, *, n: int, max_tokens: int, with_moa: bool, seed: int
) -> dict[str, Any]:
    """Every strategy on one question; returns the answers' numbers and token counts."""
    prompt = PROMPT.format(question=question)
    aggregate_params = {"temperature": 0.0, "max_tokens": max_tokens}
    greedy = await Fusion(Pool.repeat(endpoint, 1), MajorityVote("last_number")).arun(
        prompt, temperature=0.0, max_tokens=max_tokens
    )
    pool = Pool.repeat(endpoint, n)
    sampled = await Fusion(pool, MajorityVote("last_number")).arun(
        prompt, temperature=0.8, max_tokens=max_tokens, seed=seed
    )
    candidates = [c for c in sampled.candidates if c.ok]
    pool_tokens = _tokens(sampled.candidates)
    request = ChatRequest.from_wire(
        [{"role": "user", "content": prompt}],
        SamplingParams(temperature=0.8, max_tokens=max_tokens),
    )
    answers: dict[str, str | None] = {
        "single-t0": last_number(greedy.content),
        "single": last_number(candidates[0].text) if candidates else None,
        "vote": last_number(sampled.content),
    }
    tokens: dict[str, int] = {
        "single-t0": _tokens(greedy.candidates),
        "single": candidates[0].usage.total_tokens if candidates else 0,
        "vote": pool_tokens,
    }
    aggregators: dict[str, Aggregator] = {
        "best-of-n": BestOfN(LLMJudge(endpoint, params={"temperature": 0.0})),
        "usc": UniversalSelfConsistency(endpoint, params={"temperature": 0.0}),
        "fuse": Fuse(endpoint, params=aggregate_params),
    }
    if with_moa:
        aggregators["moa"] = MixtureOfAgents(endpoint, layers=2, params=aggregate_params)
    texts: dict[str, str] = {}
    for name, aggregator in aggregators.items():
        try:
            text, spent = await _aggregate(aggregator, request, pool, candidates)
        except Exception as exc:  # recorded, never hidden: the row says which strategy failed
            answers[name], tokens[name], texts[name] = None, pool_tokens, f"ERROR: {exc!r}"
            continue
        answers[name], tokens[name], texts[name] = last_number(text), pool_tokens + spent, text
    return {
        "answers": answers,
        "tokens": tokens,
        "candidates": [last_number(c.text) for c in candidates],
        "aggregator_texts": texts,
    }


async def run(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line]
    rows = rows[args.offset : args.offset + args.questions]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = (
        {json.loads(line)["id"] for line in out.read_text().splitlines()} if out.exists() else set()
    )
    with LocalModel(
        model=args.model, slots=args.n, ctx_per_slot=4096, threads=args.threads
    ) as local:
        endpoint = local.endpoint(read_timeout=1800.0)
        for offset, row in enumerate(rows, start=args.offset):
            qid = f"gsm8k-test-{offset}"
            if qid in done:
                continue
            started = time.monotonic()
            outcome = await study_question(
                endpoint,
                row["question"],
                n=args.n,
                max_tokens=args.max_tokens,
                with_moa=args.moa,
                seed=offset,
            )
            gold = gold_of(row["answer"])
            outcome["answers"]["oracle"] = gold if gold in outcome["candidates"] else None
            record = {
                "id": qid,
                "model": args.model,
                "gold": gold,
                "correct": {k: v == gold for k, v in outcome["answers"].items()},
                "seconds": round(time.monotonic() - started, 1),
                **outcome,
            }
            with out.open("a") as sink:
                sink.write(json.dumps(record) + "\n")
            print(qid, gold, record["correct"], record["seconds"], "s", flush=True)


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion: sound at the tiny sizes of a CPU slice, where
    the normal approximation or a bootstrap collapses to zero width at 0% or 100%."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summary(path: Path) -> str:
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    lines = [
        f"{len(records)} GSM8K test questions, model {records[0]['model'] if records else '?'}",
        "",
        "| strategy | correct | accuracy | 95% CI (Wilson) | tokens / question (prompt + output) |",
        "|---|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        rows = [r for r in records if strategy in r["correct"]]
        if not rows:
            continue
        right = sum(r["correct"][strategy] for r in rows)
        low, high = wilson(right, len(rows))
        spent = [r["tokens"][strategy] for r in rows if strategy in r.get("tokens", {})]
        cost = f"{sum(spent) / len(spent):.0f}" if spent else "—"
        lines.append(
            f"| {strategy} | {right}/{len(rows)} | {right / len(rows):.0%} | "
            f"{low:.0%}–{high:.0%} | {cost} |"
        )
    seconds = sum(r["seconds"] for r in records)
    lines += [
        "",
        f"wall time: {seconds / 60:.1f} min ({seconds / max(1, len(records)):.0f} s per question)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="GSM8K test.jsonl ({question, answer} lines)")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", choices=list(LOCAL_MODELS))
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--moa", action="store_true", help="also run MoA (N more long calls)")
    parser.add_argument("--out", default="benchmarks/quality/results/cpu_mini_study.jsonl")
    parser.add_argument("--summary", help="print the table of a results file and exit")
    args = parser.parse_args()
    if args.summary:
        print(summary(Path(args.summary)))
        return
    if not args.data:
        parser.error("--data is required (GSM8K test.jsonl)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
