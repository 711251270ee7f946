"""Generated routing logs with a planted pattern (no ../shared data)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from polyfuse.routing import RoutingRecord

MATH_WORDS = "add sum multiply integer equation divide fraction algebra number total".split()
POEM_WORDS = "poem rhyme verse sonnet metaphor stanza lyric imagery ballad haiku".split()

PRICES = {"model-a": (1.0, 1.0), "model-b": (1.0, 1.0), "model-c": (0.1, 0.1)}
"""$ per million tokens (input, output)."""


def query(task: str, rng: random.Random) -> str:
    words = MATH_WORDS if task == "math" else POEM_WORDS
    return " ".join(rng.choice(words) for _ in range(8)) + f" #{rng.randrange(10**6)}"


def planted_records(n_per_task: int = 60, seed: int = 0) -> list[RoutingRecord]:
    """model-a is right on math, model-b on poems; model-c is cheap and right half the time."""
    rng = random.Random(seed)
    records: list[RoutingRecord] = []
    for task in ("math", "poems"):
        for i in range(n_per_task):
            text = query(task, rng)
            scores = {
                "model-a": 1.0 if task == "math" else 0.0,
                "model-b": 1.0 if task == "poems" else 0.0,
                "model-c": float(i % 2),
            }
            for model, score in scores.items():
                price = PRICES[model][0]
                records.append(
                    RoutingRecord(
                        query_id=f"{task}-{i}",
                        query=text,
                        task=task,
                        model=model,
                        score=score,
                        prompt_tokens=100,
                        completion_tokens=100,
                        cost_usd=200 * price / 1e6,
                    )
                )
    return records


def write_llmrouter(folder: Path, split: str = "train") -> None:
    """A tiny LLMRouter-shaped folder: scores, query tasks and prices."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": "What is 2 + 3?", "scores": {"model-a": 1.0, "model-b": 0.0}},
        {"question": "Write a haiku about rain.", "scores": {"model-a": 0.0, "model-b": 0.5}},
    ]
    (folder / f"{split}.json").write_text(json.dumps(rows))
    queries = [
        {"task_name": "math", "query": "What is 2 + 3?", "metric": "em"},
        {"task_name": "poems", "query": "Write a haiku about rain.", "metric": "judge"},
        {"task_name": "poems", "query": "A query with no scores.", "metric": "judge"},
    ]
    (folder / f"default_query_{split}.jsonl").write_text(
        "\n".join(json.dumps(q) for q in queries) + "\n"
    )
    prices = {m: {"input_price": p[0], "output_price": p[1] * 2} for m, p in PRICES.items()}
    (folder / "default_llm.json").write_text(json.dumps(prices))
