"""Instrumentation events for fusion progress, sent through the LlamaIndex dispatcher.

Register a handler the LlamaIndex way to see them::

    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    class Progress(BaseEventHandler):
        def handle(self, event, **kwargs):
            if isinstance(event, FusionCandidateEndEvent):
                print(event.index, event.status)

    get_dispatcher().add_event_handler(Progress())

They fire inside the span of the LLM call or synthesis that runs the fusion.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import Dispatcher
from llama_index.core.instrumentation.events import BaseEvent

from polyfuse import (
    AggregationStarted,
    AnswerRestarted,
    CandidateFailed,
    CandidateFinished,
    FusionDone,
    FusionEvent,
    FusionResult,
)

__all__ = [
    "FusionAggregationStartEvent",
    "FusionAnswerRestartedEvent",
    "FusionCandidateEndEvent",
    "FusionEndEvent",
    "dispatch_fusion_event",
    "dispatch_result_events",
]


class FusionCandidateEndEvent(BaseEvent):
    """A candidate (a draft) finished, failed or was cancelled.

    Args:
        index: the candidate's index in the pool.
        backend: the backend that answered it.
        model: the model that answered it.
        status: ``ok``, ``failed`` or ``cancelled``.
        text: the candidate's text (``None`` unless ``ok``).
        error: why it failed (``None`` when ``ok``).
        latency_s: seconds from request to answer.
    """

    index: int
    backend: str
    model: str | None = None
    status: str
    text: str | None = None
    error: str | None = None
    latency_s: float | None = None

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FusionCandidateEndEvent"


class FusionAggregationStartEvent(BaseEvent):
    """Sampling is over; the aggregator (e.g. the fusor) starts on ``candidates`` answers."""

    method: str
    candidates: int

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FusionAggregationStartEvent"


class FusionAnswerRestartedEvent(BaseEvent):
    """The aggregator failed mid-answer; the text streamed so far is void."""

    reason: str

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FusionAnswerRestartedEvent"


class FusionEndEvent(BaseEvent):
    """The fusion finished.

    Args:
        method: the aggregation method.
        usage: tokens by role (``candidates``, ``aggregator``, ``judge``, ``total``).
        contributions: share of the answer found in each candidate, by index.
        selected: the chosen candidate for selection methods and fallbacks.
        fallback_reason: why the answer is a fallback, when it is one.
    """

    method: str
    usage: dict[str, Any]
    contributions: dict[int, float] | None = None
    selected: int | None = None
    fallback_reason: str | None = None

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "FusionEndEvent"


def dispatch_fusion_event(dispatcher: Dispatcher, event: FusionEvent) -> None:
    """Send the LlamaIndex event matching a polyfuse event (token and start events have none:
    tokens already surface through LlamaIndex's own streaming events)."""
    if isinstance(event, (CandidateFinished, CandidateFailed)):
        c = event.candidate
        dispatcher.event(
            FusionCandidateEndEvent(
                index=c.index,
                backend=c.backend,
                model=c.model,
                status=c.status,
                text=c.content if c.ok else None,
                error=c.error.message if c.error else None,
                latency_s=c.latency_s,
            )
        )
    elif isinstance(event, AggregationStarted):
        dispatcher.event(
            FusionAggregationStartEvent(method=event.method, candidates=event.candidates)
        )
    elif isinstance(event, AnswerRestarted):
        dispatcher.event(FusionAnswerRestartedEvent(reason=event.reason))
    elif isinstance(event, FusionDone):
        record = event.result.aggregation
        dispatcher.event(
            FusionEndEvent(
                method=record.method,
                usage=event.result.usage.model_dump_total(),
                contributions=record.contributions,
                selected=record.selected,
                fallback_reason=record.fallback_reason,
            )
        )


def dispatch_result_events(dispatcher: Dispatcher, result: FusionResult) -> None:
    """Send the events of a fusion that ran without streaming, from its result: one
    :class:`FusionCandidateEndEvent` per candidate, then the aggregation's start and end."""
    for candidate in result.candidates:
        finished = CandidateFinished(candidate) if candidate.ok else CandidateFailed(candidate)
        dispatch_fusion_event(dispatcher, finished)
    method = result.aggregation.method
    dispatch_fusion_event(dispatcher, AggregationStarted(method, len(result.succeeded)))
    dispatch_fusion_event(dispatcher, FusionDone(result))
