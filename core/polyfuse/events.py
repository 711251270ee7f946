"""Events a fusion emits while it runs (for progress views and streaming)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import Candidate, FusionResult

__all__ = [
    "AggregationStarted",
    "AnswerRestarted",
    "CandidateCancelled",
    "CandidateFailed",
    "CandidateFinished",
    "CandidateStarted",
    "CandidateToken",
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
class CandidateToken:
    """A piece of one candidate's text as it streams in.

    Emitted only when candidates are sampled with streaming requests
    (``QuorumPolicy(stream_candidates=True)``); a candidate that fails after some tokens is
    followed by :class:`CandidateFailed`, and its tokens are not part of any answer.
    """

    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class CandidateFinished:
    """A candidate answered."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class CandidateFailed:
    """A candidate failed or was cancelled (``candidate.status`` says which)."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class CandidateCancelled(CandidateFailed):
    """A candidate still running was cancelled because the quorum was reached or the deadline
    passed (``reason``: ``"quorum"`` or ``"deadline"``).

    A subclass of :class:`CandidateFailed`, so code that handles failures sees it too.
    """

    reason: str


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
    | CandidateToken
    | CandidateFinished
    | CandidateFailed
    | AggregationStarted
    | FusedToken
    | AnswerRestarted
    | FusionDone
)
