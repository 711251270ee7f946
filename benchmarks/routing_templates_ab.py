"""Do thought templates help a small model? A bounded A/B on real GSM8K data (issue #18).

Templates come from real answers: ZeroEval's GSM8K pools (12 models' answers to the GSM8K
test questions, each marked correct or not; ``../shared/data/pools/zeroeval-gsm8k``). The first
``--sources`` questions (with at least one correct answer) are summarised into templates by the
embedded model (hybrid selection: the 3 best correct answers, cut to 600 characters); then the
embedded model answers ``--questions`` *other* GSM8K questions twice, greedily — without, and
with the 2 retrieved templates in its system message — and the paired difference in accuracy
is reported with a paired bootstrap 95% CI.

CPU bounded: one llama.cpp thread, one slot (``--threads``). About 8 minutes with the defaults
on a shared 2-core machine::

    python benchmarks/routing_templates_ab.py \
        --pools /work/shared/data/pools/zeroeval-gsm8k/gsm_responses_12models.jsonl.gz \
        --out /tmp/templates-ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from polyfuse.eval.stats import bootstrap
from polyfuse.local import LocalModel
from polyfuse.messages import ChatRequest
from polyfuse.routing import (
    RoutingRecord,
    TemplateBuilder,
    TemplateStore,
    ThoughtTemplates,
    select_top_responses,
)

SYSTEM = (
    "Solve the math word problem in at most 5 short steps, then write the final line as "
    "'Answer: <number>'."
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def read_pools(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Pool rows by question id, in file order."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            by_id[row["id"]].append(row)
    return by_id


def answer_of(text: str) -> float | None:
    """The first number after the last 'Answer:', else the last number in the text."""
    if "Answer:" in text:
        after = _NUMBER.findall(text.rsplit("Answer:", 1)[1])
        if after:
            return float(after[0].replace(",", ""))
    numbers = _NUMBER.findall(text)
    return float(numbers[-1].replace(",", "")) if numbers else None


def correct(text: str, gold: str) -> float:
    value = answer_of(text)
    return float(value is not None and abs(value - float(gold.replace(",", ""))) < 1e-6)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description="Thought templates A/B on GSM8K (see the docstring)."
    )
    parser.add_argument("--pools", type=Path, required=True)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sources", type=int, default=8, help="questions made into templates")
    parser.add_argument("--questions", type=int, default=20, help="held-out questions asked")
    parser.add_argument("--first-question", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--k", type=int, default=2, help="templates per question")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    pools = read_pools(args.pools)
    ids = list(pools)
    records = [
        RoutingRecord(
            query_id=row["id"],
            query=row["question"],
            task="gsm8k",
            model=row["model"],
            response=row["output"],
            score=float(str(row["correct"]) in ("1", "True", "true")),
        )
        for qid in ids[: args.sources * 2]
        for row in pools[qid]
    ]
    groups = select_top_responses(records)[: args.sources]
    held_out = ids[args.first_question : args.first_question + args.questions]
    started = time.perf_counter()
    async with LocalModel(model=args.model, threads=args.threads, slots=1) as local:
        endpoint = local.endpoint()
        builder = TemplateBuilder(endpoint, max_answer_chars=600, concurrency=1, max_tokens=150)
        templates, failures = await builder.abuild(groups)
        built_s = time.perf_counter() - started
        steps = ThoughtTemplates(TemplateStore(templates), task="gsm8k", k=args.k)
        rows: list[dict[str, Any]] = []
        for qid in held_out:
            question, gold = pools[qid][0]["question"], pools[qid][0]["gold"]
            plain = ChatRequest.build(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
                temperature=0.0,
                max_tokens=args.max_tokens,
            )
            templated = await steps.aapply(plain)
            answers = {}
            for name, request in (("without", plain), ("with", templated)):
                completion = (await endpoint.complete(request))[0]
                answers[name] = completion.content or ""
            rows.append(
                {
                    "id": qid,
                    "gold": gold,
                    **{f"{n}_correct": correct(text, gold) for n, text in answers.items()},
                    **{f"{n}_text": text for n, text in answers.items()},
                }
            )
            print(qid, rows[-1]["without_correct"], rows[-1]["with_correct"], flush=True)
    total_s = time.perf_counter() - started
    estimates, (comparison,) = bootstrap(
        {"with": [r["with_correct"] for r in rows], "without": [r["without_correct"] for r in rows]}
    )
    summary = {
        "model": args.model,
        "threads": args.threads,
        "templates": len(templates),
        "template_failures": [f.error for f in failures],
        "questions": len(rows),
        "accuracy_without": estimates["without"].mean,
        "accuracy_with": estimates["with"].mean,
        "ci_without": [estimates["without"].low, estimates["without"].high],
        "ci_with": [estimates["with"].low, estimates["with"].high],
        "difference": comparison.diff.mean,
        "difference_ci": [comparison.diff.low, comparison.diff.high],
        "p_value": comparison.p_value,
        "build_seconds": round(built_s, 1),
        "total_seconds": round(total_s, 1),
    }
    args.out.write_text(
        json.dumps(
            {"summary": summary, "templates": [t.model_dump() for t in templates], "rows": rows},
            indent=2,
        ),
        encoding="utf-8",
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
