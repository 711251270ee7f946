"""What a fusion returns: the answer, every candidate, every call, and usage by role."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .messages import AssistantMessage, ToolCall
from .usage import Usage, UsageByRole

__all__ = [
    "AggregationRecord",
    "CallRecord",
    "Candidate",
    "CandidateStatus",
    "ErrorInfo",
    "FusionResult",
    "SamplingRecord",
    "StopReason",
]

CandidateStatus = Literal["ok", "failed", "cancelled"]
CallRole = Literal["candidate", "aggregator", "judge", "proposer"]


class ErrorInfo(BaseModel):
    """A failure, as data: the error type and its message (never a key)."""

    type: str
    message: str
    status_code: int | None = None
    retries: int = 0
    """How many times the failed call was sent again before giving up."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe an exception."""
        return cls(
            type=type(exc).__name__,
            message=str(exc) or type(exc).__name__,
            status_code=getattr(exc, "status_code", None),
            retries=getattr(exc, "retries", 0),
        )


class Candidate(BaseModel):
    """One sampled answer, successful or not."""

    index: int
    backend: str
    model: str | None = None
    status: CandidateStatus = "ok"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    latency_s: float | None = None
    ttft_s: float | None = None
    seed: int | None = None
    error: ErrorInfo | None = None
    retries: int = 0
    """How many times its request was sent again after a failure (the endpoint's retries)."""

    @property
    def ok(self) -> bool:
        """True when the candidate produced an answer."""
        return self.status == "ok"

    @property
    def text(self) -> str:
        """The content, or an empty string."""
        return self.content or ""

    @property
    def label(self) -> str:
        """A short human label, e.g. ``#2 (vllm-a)``."""
        return f"#{self.index} ({self.backend})"

    def message(self) -> AssistantMessage:
        """This candidate as an assistant message."""
        return AssistantMessage(content=self.content, tool_calls=self.tool_calls)


class CallRecord(BaseModel):
    """One call an aggregator made (fusor, judge, selector, MoA proposer)."""

    role: CallRole
    backend: str
    model: str | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    latency_s: float | None = None
    ttft_s: float | None = None
    error: ErrorInfo | None = None
    note: str | None = None
    retries: int = 0
    """How many times the call was sent again after a failure (the endpoint's retries)."""


class AggregationRecord(BaseModel):
    """How the final answer was made from the candidates.

    ``selected`` is the index of the chosen candidate for selection methods (and for a
    fallback); ``contributions`` estimates, for synthesis methods, how much of the final text
    comes from each candidate (share of the answer's word 4-grams found in it).
    """

    method: str
    selected: int | None = None
    scores: dict[int, float | None] | None = None
    contributions: dict[int, float] | None = None
    calls: list[CallRecord] = Field(default_factory=list)
    fallback_reason: str | None = None
    notes: list[str] = Field(default_factory=list)


StopReason = Literal["settled", "decided", "agreement", "exhausted", "deadline", "max_rounds"]


class SamplingRecord(BaseModel):
    """How adaptive sampling went (see :mod:`polyfuse.adaptive`).

    ``rounds`` lists the samples requested in each round; ``stop_reason`` is ``settled`` (the
    majority answer's confidence reached the threshold), ``decided`` (the samples left could
    not overturn the majority), ``agreement`` (open-ended texts agreed
    enough), ``exhausted`` (all N were drawn), ``deadline`` or ``max_rounds`` (the most rounds
    allowed were drawn); ``score`` is the last confidence
    (``beta``) or agreement (``text``) measured.
    """

    criterion: Literal["beta", "text"]
    rounds: list[int] = Field(default_factory=list)
    samples_used: int = 0
    max_samples: int = 0
    stop_reason: StopReason = "exhausted"
    score: float | None = None
    detail: str = ""


class FusionResult(BaseModel):
    """The outcome of one fusion; JSON-serialisable with ``model_dump_json()``."""

    message: AssistantMessage
    candidates: list[Candidate]
    aggregation: AggregationRecord
    usage: UsageByRole
    latency_s: float
    ttft_s: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    sampling: SamplingRecord | None = None
    """Set when the fusion sampled adaptively: rounds, samples used, why it stopped."""

    @property
    def content(self) -> str:
        """The final answer's text (empty when it is only tool calls)."""
        return self.message.content or ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The final answer's tool calls (empty list when none)."""
        return self.message.tool_calls or []

    @property
    def total_usage(self) -> Usage:
        """Every call made, summed."""
        return self.usage.total

    @property
    def succeeded(self) -> list[Candidate]:
        """The candidates that produced an answer."""
        return [c for c in self.candidates if c.ok]

    @property
    def failed(self) -> list[Candidate]:
        """The candidates that failed or were cancelled."""
        return [c for c in self.candidates if not c.ok]

    @property
    def finish_reason(self) -> str:
        """``tool_calls`` when the answer is tool calls, else the deciding call's reason."""
        if self.message.tool_calls:
            return "tool_calls"
        for call in reversed(self.aggregation.calls):
            if call.role == "aggregator" and call.finish_reason:
                return call.finish_reason
        if self.aggregation.selected is not None:
            for cand in self.candidates:
                if cand.index == self.aggregation.selected and cand.finish_reason:
                    return cand.finish_reason
        return "stop"
