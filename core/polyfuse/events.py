"""Events a fusion emits while it runs (for progress views and streaming)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import Candidate, FusionResult

__all__ = [
    "AggregationStarted",
    "AnswerRestarted",
    "CandidateFailed",
    "CandidateFinished",
    "CandidateStarted",
    "FusedToken",
    "FusionDone",
    "FusionEvent",
]


@dataclass(frozen=True, slots=True)
class CandidateStarted:
    """A candidate request was sent."""

    index: int
    backend: str


@dataclass(frozen=True, slots=True)
class CandidateFinished:
    """A candidate answered."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class CandidateFailed:
    """A candidate failed or was cancelled (``candidate.status`` says which)."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class AggregationStarted:
    """The aggregator started, with this many usable candidates."""

    method: str
    candidates: int


@dataclass(frozen=True, slots=True)
class FusedToken:
    """A piece of the final answer's text."""

    delta: str


@dataclass(frozen=True, slots=True)
class AnswerRestarted:
    """The streamed answer so far is void (the aggregator failed mid-stream); a fallback follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class FusionDone:
    """The fusion finished; ``result`` holds everything."""

    result: FusionResult


FusionEvent = (
    CandidateStarted
    | CandidateFinished
    | CandidateFailed
    | AggregationStarted
    | FusedToken
    | AnswerRestarted
    | FusionDone
)
