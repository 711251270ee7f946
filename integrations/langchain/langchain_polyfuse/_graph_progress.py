"""A fusion's events as LangGraph ``custom`` stream events, and the result they end with."""

from __future__ import annotations

from typing import Any

from langgraph.types import StreamWriter

from polyfuse import (
    AggregationStarted,
    AnswerRestarted,
    Candidate,
    CandidateFailed,
    CandidateFinished,
    CandidateStarted,
    FusionDone,
    FusionEvent,
    FusionResult,
)

__all__ = ["PROGRESS_KEY", "FusionProgress", "progress_event"]

PROGRESS_KEY = "polyfuse"
"""The key that marks polyfuse's events in the ``custom`` stream; its value names the event."""


def _candidate(candidate: Candidate) -> dict[str, Any]:
    return {
        "index": candidate.index,
        "backend": candidate.backend,
        "model": candidate.model,
        "status": candidate.status,
        "latency_s": candidate.latency_s,
    }


def progress_event(event: FusionEvent) -> dict[str, Any] | None:
    """``event`` as plain JSON data for the ``custom`` stream (``None`` for fused tokens, which
    LangGraph streams in ``messages`` mode).

    Every payload has ``{"polyfuse": <event name>}``; the names are ``candidate_started``,
    ``candidate_finished``, ``candidate_failed`` (``status`` is ``failed`` or ``cancelled``),
    ``aggregation_started``, ``answer_restarted`` and ``fusion_done``.
    """
    if isinstance(event, CandidateStarted):
        return {PROGRESS_KEY: "candidate_started", "index": event.index, "backend": event.backend}
    if isinstance(event, CandidateFinished):
        candidate = event.candidate
        return {
            PROGRESS_KEY: "candidate_finished",
            **_candidate(candidate),
            "ttft_s": candidate.ttft_s,
            "finish_reason": candidate.finish_reason,
            "tool_calls": [call.function.name for call in candidate.tool_calls or ()],
            "usage": candidate.usage.model_dump(),
        }
    if isinstance(event, CandidateFailed):
        candidate = event.candidate
        error = candidate.error
        return {
            PROGRESS_KEY: "candidate_failed",
            **_candidate(candidate),
            "error": error.message if error is not None else None,
        }
    if isinstance(event, AggregationStarted):
        return {
            PROGRESS_KEY: "aggregation_started",
            "method": event.method,
            "candidates": event.candidates,
        }
    if isinstance(event, AnswerRestarted):
        return {PROGRESS_KEY: "answer_restarted", "reason": event.reason}
    if isinstance(event, FusionDone):
        result = event.result
        return {
            PROGRESS_KEY: "fusion_done",
            "method": result.aggregation.method,
            "n": len(result.candidates),
            "succeeded": len(result.succeeded),
            "selected": result.aggregation.selected,
            "fallback_reason": result.aggregation.fallback_reason,
            "finish_reason": result.finish_reason,
            "latency_s": result.latency_s,
            "usage": result.usage.total.model_dump(),
        }
    return None


class FusionProgress:
    """A fusion listener for one node run: writes progress to LangGraph's stream writer (when
    the node runs inside a graph) and keeps the :class:`~polyfuse.FusionResult` it ends with.

    Args:
        writer: the node's stream writer, or ``None`` outside a graph.
        node: the node's name, added to every payload as ``"node"``.
    """

    def __init__(self, writer: StreamWriter | None, node: str | None) -> None:
        self.writer = writer
        self.node = node
        self.result: FusionResult | None = None

    def __call__(self, event: FusionEvent) -> None:
        """Handle one event (called by ``ChatFusion`` on the caller's thread or task)."""
        if isinstance(event, FusionDone):
            self.result = event.result
        if self.writer is None:
            return
        payload = progress_event(event)
        if payload is not None:
            if self.node is not None:
                payload["node"] = self.node
            self.writer(payload)
