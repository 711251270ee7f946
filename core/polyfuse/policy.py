"""When to stop waiting for candidates and what to do when aggregation fails."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["QuorumPolicy"]


class QuorumPolicy(BaseModel):
    """How long a fusion waits for its candidates.

    Args:
        quorum: proceed as soon as this many candidates succeeded and cancel the rest
            (default: wait for all of them).
        deadline: seconds after sampling starts; at the deadline, if at least
            ``min_candidates`` succeeded, cancel the stragglers and proceed. If fewer did,
            keep waiting only until ``min_candidates`` are in (each call is still bounded by its
            endpoint's timeouts).
        min_candidates: the fewest successful candidates worth aggregating (default 1).
        fallback_on_aggregator_error: when the aggregator fails, answer with the best surviving
            candidate and record why (default) instead of raising
            :class:`~polyfuse.errors.AggregationError`. A misconfigured aggregator
            (:class:`~polyfuse.errors.InvalidRequestError`, e.g. a reward model URL that
            answers 404) is always raised.
        stream_candidates: sample candidates with streaming requests, which records each
            candidate's time to first token at a small CPU cost per token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quorum: int | None = Field(default=None, ge=1)
    deadline: float | None = Field(default=None, gt=0)
    min_candidates: int = Field(default=1, ge=1)
    fallback_on_aggregator_error: bool = True
    stream_candidates: bool = False

    @model_validator(mode="after")
    def _check(self) -> QuorumPolicy:
        if self.quorum is not None and self.quorum < self.min_candidates:
            raise ValueError(
                f"quorum={self.quorum} is below min_candidates={self.min_candidates}; "
                "raise quorum or lower min_candidates"
            )
        return self
