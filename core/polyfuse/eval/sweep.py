"""Majority vote over every panel size, straight from a recorded pool (no model, no store).

Each candidate is graded and reduced to its voting key once; a panel's vote is then a count
over at most a dozen keys per prompt. Panels grow by adding models in the order given (by
default strongest first, by their recounted accuracy), so size k is "the k strongest models".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import EvalConfigError
from .graders import answer_key, grade_answer, grader_for
from .pools import PoolEntry, pool_models
from .rows import EvalRow
from .stats import Estimate, bootstrap

__all__ = ["GradedPool", "PanelResult", "grade_pool", "panel_sweep"]


@dataclass
class GradedPool:
    """Every candidate's score (1/0) and voting key, per prompt and model."""

    models: list[str]
    scores: list[dict[str, float]]
    keys: list[dict[str, str | None]]

    def accuracy(self, model: str) -> float:
        """The model's recounted accuracy over the prompts it answered."""
        values = [s[model] for s in self.scores if model in s]
        return sum(values) / len(values) if values else 0.0

    def ranked(self) -> list[str]:
        """Models, strongest first (ties: pool order)."""
        return sorted(self.models, key=lambda m: -self.accuracy(m))


@dataclass(frozen=True)
class PanelResult:
    """Vote over one panel: its accuracy with a CI, and the oracle (some member right)."""

    size: int
    panel: tuple[str, ...]
    vote: Estimate
    oracle: float
    best_single: float


def _row(entry: PoolEntry) -> EvalRow:
    row = entry.row
    return EvalRow(
        input_hash=str(row.get("id")),
        messages=[{"role": "user", "content": str(row.get("prompt") or "")}],
        id=str(row.get("id")),
        gold=None if row.get("gold") is None else str(row.get("gold")),
        task=str(row.get("task") or "default"),
        grader=row.get("grader"),
        test_code=row.get("test_code"),
        entry_point=row.get("entry_point"),
        code_prefix=row.get("code_prefix"),
    )


async def _grade_entry(
    entry: PoolEntry, grader: str | None
) -> tuple[dict[str, float], dict[str, str | None]]:
    row = _row(entry)
    if grader_for(row, grader) is None:
        raise EvalConfigError(
            f"prompt {row.id!r} has no gold answer: a panel sweep needs verifiable answers"
        )
    scores: dict[str, float] = {}
    keys: dict[str, str | None] = {}
    for candidate in entry.candidates:
        if candidate.model in scores:
            continue  # one answer per model per prompt: the first
        graded = await grade_answer(candidate.text, row, override=grader)
        if graded is None:
            continue
        name, grade = graded
        scores[candidate.model] = grade.score
        # number and choice grades carry the voting key already; spare a second extraction
        keys[candidate.model] = (
            grade.extracted
            if name in ("number", "choice")
            else answer_key(candidate.text, row, grader)
        )
    return scores, keys


async def grade_pool(entries: Sequence[PoolEntry], *, grader: str | None = None) -> GradedPool:
    """Grade every candidate once."""
    graded = [await _grade_entry(e, grader) for e in entries]
    return GradedPool(
        models=pool_models(entries),
        scores=[s for s, _ in graded],
        keys=[k for _, k in graded],
    )


def _vote(keys: dict[str, str | None], scores: dict[str, float], panel: Sequence[str]) -> float:
    """1.0 when the panel's majority answer is right (ties: the earliest member's answer)."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for model in panel:
        key = keys.get(model)
        if key is not None:
            counts[key] += 1
            first.setdefault(key, model)
    if not counts:
        return scores.get(panel[0], 0.0)  # nobody answered: what the first member said
    order = {m: i for i, m in enumerate(panel)}
    winner = max(counts, key=lambda k: (counts[k], -order[first[k]]))
    return scores.get(first[winner], 0.0)


def panel_sweep(
    graded: GradedPool,
    *,
    order: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    resamples: int = 2000,
) -> list[PanelResult]:
    """Vote accuracy (with CI) for each panel size, panels growing along ``order``."""
    ranking = list(order) if order is not None else graded.ranked()
    unknown = [m for m in ranking if m not in graded.models]
    if unknown:
        raise EvalConfigError(f"no answers from {', '.join(unknown)} in the pools")
    chosen = list(sizes) if sizes is not None else list(range(1, len(ranking) + 1))
    results: list[PanelResult] = []
    for size in chosen:
        if not 1 <= size <= len(ranking):
            raise EvalConfigError(f"panel size {size} is outside 1..{len(ranking)}")
        panel = ranking[:size]
        votes: list[float | None] = []
        oracle = 0
        for keys, scores in zip(graded.keys, graded.scores, strict=True):
            members = [m for m in panel if m in scores]
            if not members:
                votes.append(None)
                continue
            votes.append(_vote(keys, scores, members))
            oracle += int(any(scores[m] for m in members))
        estimate = bootstrap({"vote": votes}, resamples=resamples)[0]["vote"]
        answered = sum(v is not None for v in votes)
        results.append(
            PanelResult(
                size=size,
                panel=tuple(panel),
                vote=estimate,
                oracle=oracle / answered if answered else 0.0,
                best_single=max(graded.accuracy(m) for m in panel),
            )
        )
    return results
