"""Best-of-N: a scorer rates every candidate; the best one is returned."""

from __future__ import annotations

from typing import ClassVar

from ..backends.base import Backend
from ..errors import AggregationError
from ..results import AggregationRecord
from .base import Aggregate, AggregationContext, Aggregator
from .scorers import LLMJudge, Scorer

__all__ = ["BestOfN"]


class BestOfN(Aggregator):
    """Pick the highest-scored candidate (ties: the lowest index).

    Args:
        scorer: an :class:`LLMJudge`, a :class:`RewardModelScorer`, a :class:`FunctionScorer`,
            or any :class:`Scorer`. A plain :class:`Backend` is wrapped in an ``LLMJudge``.
    """

    method: ClassVar[str] = "best_of_n"

    def __init__(self, scorer: Scorer | Backend) -> None:
        self.scorer: Scorer = scorer if isinstance(scorer, Scorer) else LLMJudge(scorer)

    def __repr__(self) -> str:
        return f"BestOfN(scorer={type(self.scorer).__name__})"

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Score and select."""
        result = await self.scorer.score(ctx.request, ctx.candidates)
        if len(result.scores) != len(ctx.candidates):
            raise AggregationError(
                f"the scorer returned {len(result.scores)} scores for {len(ctx.candidates)} candidates"
            )
        scores = {c.index: s for c, s in zip(ctx.candidates, result.scores, strict=False)}
        record = AggregationRecord(method=self.method, scores=scores, calls=result.calls)
        scored = [(s, i) for i, s in scores.items() if s is not None]
        if not scored:
            errors = [c.error.message for c in result.calls if c.error is not None]
            raise AggregationError(
                "no candidate could be scored"
                + (f": {errors[0]}" if errors else " (the judge's replies had no score)"),
                record=record,
            )
        best_score, best_index = max(scored, key=lambda pair: (pair[0], -pair[1]))
        record.selected = best_index
        unscored = len(scores) - len(scored)
        if unscored:
            record.notes.append(f"{unscored} candidate(s) could not be scored and were skipped")
        chosen = next(c for c in ctx.candidates if c.index == best_index)
        record.notes.append(f"selected #{best_index} with score {best_score:g}")
        return Aggregate(message=chosen.message(), record=record)
