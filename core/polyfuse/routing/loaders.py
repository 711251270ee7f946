"""Loaders: other logs → :class:`RoutingRecord` lists.

* :func:`load_llmrouter`: the LLMRouter files (``train.json``/``test.json`` scores joined with
  ``default_query_{split}.jsonl`` tasks and ``default_llm.json`` prices).
* :func:`records_from_fusion`: what a :class:`~polyfuse.results.FusionResult` holds (each
  successful candidate with its model, tokens and latency).

LLMRouter's logs carry no token counts, so their cost is **estimated**: the query's token count
(Llama-2 tokenizer, see :mod:`polyfuse.routing.tokens`) at the model's input price plus a stated
output length (``output_tokens``, default 256) at its output price; such records carry
``cost_estimated=True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..results import FusionResult
from .records import RoutingRecord
from .tokens import count_tokens

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "ModelPrice",
    "estimate_cost",
    "load_llmrouter",
    "load_prices",
    "records_from_fusion",
]

DEFAULT_OUTPUT_TOKENS = 256
"""The output length assumed when a log records none (tokens per answer)."""


@dataclass(frozen=True)
class ModelPrice:
    """A model's price in US dollars per million tokens."""

    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for one call."""
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1e6


def estimate_cost(price: ModelPrice, prompt_tokens: int, output_tokens: int) -> float:
    """Dollars for a call of ``prompt_tokens`` in and ``output_tokens`` out."""
    return price.cost(prompt_tokens, output_tokens)


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise InvalidRequestError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{path} is not JSON ({exc})") from None


def load_prices(path: str | Path) -> dict[str, ModelPrice]:
    """Read ``{model: {input_price, output_price, ...}}`` ($ per million tokens)."""
    source = Path(path)
    raw = _read_json(source)
    if not isinstance(raw, dict) or not raw:
        raise InvalidRequestError(f"{source}: expected an object mapping model → prices")
    prices: dict[str, ModelPrice] = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict):
            raise InvalidRequestError(f"{source}: the entry of {model!r} is not an object")
        missing = [k for k in ("input_price", "output_price") if k not in entry]
        if missing:
            raise InvalidRequestError(f"{source}: {model!r} has no {' or '.join(missing)}")
        try:
            prices[str(model)] = ModelPrice(
                float(entry["input_price"]), float(entry["output_price"])
            )
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"{source}: the prices of {model!r} are not numbers"
            ) from None
    return prices


def _query_tasks(path: Path) -> dict[str, str]:
    if not path.exists():
        raise InvalidRequestError(f"{path} does not exist (it maps each query to its task)")
    tasks: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(f"{path}:{number}: not JSON ({exc})") from None
            missing = [k for k in ("query", "task_name") if k not in row]
            if missing:
                raise InvalidRequestError(f"{path}:{number}: missing column {', '.join(missing)}")
            task = str(row["task_name"]).strip()
            if not task:
                raise InvalidRequestError(f"{path}:{number}: the task_name is empty")
            # A few queries appear under two tasks (an MMLU item reused by OpenBookQA): the
            # first one wins, as in LLMRouter's own join.
            tasks.setdefault(str(row["query"]), task)
    return tasks


def load_llmrouter(
    folder: str | Path,
    split: str = "train",
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    on_progress: Callable[[int], None] | None = None,
) -> list[RoutingRecord]:
    """Load one split of LLMRouter's logs as routing records (one per query × model).

    Args:
        folder: the folder holding ``{split}.json``, ``default_query_{split}.jsonl`` and
            ``default_llm.json``.
        split: ``train`` or ``test``.
        output_tokens: the output length assumed for the cost estimate (the logs have none).
        on_progress: called with the number of queries done.

    Every query must have a task in the query file and every model a price; the error names
    the first that does not.
    """
    if output_tokens < 0:
        raise InvalidRequestError(f"output_tokens must be >= 0 (got {output_tokens})")
    root = Path(folder)
    scores_path = root / f"{split}.json"
    rows = _read_json(scores_path)
    if not isinstance(rows, list) or not rows:
        raise InvalidRequestError(f"{scores_path}: expected a non-empty list of queries")
    tasks = _query_tasks(root / f"default_query_{split}.jsonl")
    prices = load_prices(root / "default_llm.json")
    questions: list[str] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidRequestError(f"{scores_path}[{index}] is not an object")
        missing = [k for k in ("question", "scores") if k not in row]
        if missing:
            raise InvalidRequestError(
                f"{scores_path}[{index}]: missing column {', '.join(missing)}"
            )
        questions.append(str(row["question"]))
    tokens = count_tokens(questions)
    records: list[RoutingRecord] = []
    for index, (row, question, prompt_tokens) in enumerate(
        zip(rows, questions, tokens, strict=True)
    ):
        task = tasks.get(question)
        if task is None:
            raise InvalidRequestError(
                f"{scores_path}[{index}]: the query is not in default_query_{split}.jsonl, so its "
                "task is unknown"
            )
        scores = row["scores"]
        if not isinstance(scores, dict) or not scores:
            raise InvalidRequestError(
                f"{scores_path}[{index}]: 'scores' is not a model → score map"
            )
        for model, score in scores.items():
            price = prices.get(model)
            if price is None:
                raise InvalidRequestError(
                    f"{scores_path}[{index}]: model {model!r} has no price in default_llm.json"
                )
            records.append(
                RoutingRecord(
                    query_id=f"{split}-{index}",
                    query=question,
                    task=task,
                    model=model,
                    score=float(score),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=output_tokens,
                    cost_usd=price.cost(prompt_tokens, output_tokens),
                    cost_estimated=True,
                    source=f"llmrouter:{split}",
                )
            )
        if on_progress is not None:
            on_progress(1)
    return records


def records_from_fusion(
    result: FusionResult,
    query: str,
    scores: Mapping[int, float] | Callable[[str], float],
    *,
    task: str | None = None,
    query_id: str | None = None,
    judge_scores: Mapping[int, float] | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    source: str = "fusion",
) -> list[RoutingRecord]:
    """One record per successful candidate of a fusion, each with the model that wrote it.

    Args:
        result: the fusion.
        query: the query's text.
        scores: each candidate's score in [0, 1], by candidate index, or a function of its
            text (e.g. an exact-match check against the gold answer).
        task: the query's task.
        judge_scores: optional judge scores in [0, 1] by candidate index.
        prices: $ per million tokens by model; the cost is computed from the candidate's
            measured usage (None when the model has no price or the usage is unknown).

    Failed and cancelled candidates produced no answer and make no record.
    """
    records: list[RoutingRecord] = []
    for candidate in result.candidates:
        if not candidate.ok:
            continue
        if callable(scores):
            score = scores(candidate.text)
        elif candidate.index in scores:
            score = scores[candidate.index]
        else:
            raise InvalidRequestError(f"no score for candidate #{candidate.index}")
        model = candidate.model or candidate.backend
        usage = candidate.usage
        prompt = usage.prompt_tokens if usage.complete else None
        completion = usage.completion_tokens if usage.complete else None
        price = prices.get(model) if prices is not None else None
        cost = (
            price.cost(prompt, completion)
            if price is not None and prompt is not None and completion is not None
            else None
        )
        records.append(
            RoutingRecord(
                query_id=query_id,
                query=query,
                task=task,
                model=model,
                response=candidate.text,
                score=float(score),
                judge_score=judge_scores.get(candidate.index) if judge_scores else None,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                latency_s=candidate.latency_s,
                source=source,
            )
        )
    return records
