"""Turning polyfuse results and events into LangChain messages and stream chunks."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from polyfuse import (
    AggregationError,
    AnswerRestarted,
    FusedToken,
    FusionDone,
    FusionEvent,
    FusionResult,
)

from ._convert import langchain_tool_calls, tool_call_chunks, usage_metadata

__all__ = ["ChunkStream", "answer_model", "fusion_metadata", "message_from_result"]

PROVIDER = "polyfuse"


def answer_model(result: FusionResult) -> str | None:
    """The model that produced the final answer: the selected candidate's, else the
    aggregator's (the fusor for ``fuse``, the last aggregator call for ``moa``)."""
    selected = result.aggregation.selected
    if selected is not None:
        for candidate in result.candidates:
            if candidate.index == selected:
                return candidate.model
    for call in reversed(result.aggregation.calls):
        if call.role == "aggregator" and call.error is None:
            return call.model
    return None


def fusion_metadata(result: FusionResult) -> dict[str, Any]:
    """What happened in a fusion, as plain JSON data (``response_metadata["fusion"]``)."""
    record = result.aggregation
    total = result.usage.total
    return {
        "method": record.method,
        "n": len(result.candidates),
        "candidates": [
            {
                "index": c.index,
                "backend": c.backend,
                "model": c.model,
                "status": c.status,
                "text": c.content,
                "tool_calls": [t.model_dump() for t in c.tool_calls] if c.tool_calls else None,
                "finish_reason": c.finish_reason,
                "usage": c.usage.model_dump(),
                "latency_s": c.latency_s,
                "error": c.error.model_dump() if c.error else None,
            }
            for c in result.candidates
        ],
        "selected": record.selected,
        "scores": record.scores,
        "contributions": record.contributions,
        "fallback_reason": record.fallback_reason,
        "notes": list(record.notes),
        "calls": [
            {
                "role": call.role,
                "backend": call.backend,
                "model": call.model,
                "usage": call.usage.model_dump(),
                "latency_s": call.latency_s,
                "error": call.error.model_dump() if call.error else None,
                "note": call.note,
            }
            for call in record.calls
        ],
        "usage": result.usage.model_dump_total(),
        "usage_complete": total.complete,
        "latency_s": result.latency_s,
        "ttft_s": result.ttft_s,
        # A routed pool's decision (chosen models, ranking, scores, costs), when there is one.
        **({"routing": result.metadata["routing"]} if "routing" in result.metadata else {}),
    }


def _response_metadata(result: FusionResult, fallback_model: str) -> dict[str, Any]:
    return {
        "model_name": answer_model(result) or fallback_model,
        "finish_reason": result.finish_reason,
        "model_provider": PROVIDER,
        "fusion": fusion_metadata(result),
    }


def message_from_result(result: FusionResult, *, fallback_model: str) -> AIMessage:
    """The fused answer as an ``AIMessage`` with honest total usage and the fusion details."""
    valid, invalid = langchain_tool_calls(result.message.tool_calls)
    return AIMessage(
        content=result.content,
        tool_calls=valid,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(result.usage.total),
        response_metadata=_response_metadata(result, fallback_model),
    )


class ChunkStream:
    """Maps a fusion's events to LangChain stream chunks.

    Text arrives as :class:`~polyfuse.FusedToken` deltas (one chunk each); the final chunk
    carries the tool calls, the usage of every call and the metadata, and is marked
    ``chunk_position="last"``, so exactly one chunk holds usage and ``model_name``.
    """

    def __init__(self, *, fallback_model: str) -> None:
        self.fallback_model = fallback_model
        self._sent_text = False

    def chunk(self, event: FusionEvent) -> ChatGenerationChunk | None:
        """The chunk for ``event``, or ``None`` for progress events."""
        if isinstance(event, FusedToken):
            if not event.delta:
                return None
            self._sent_text = True
            return ChatGenerationChunk(message=AIMessageChunk(content=event.delta))
        if isinstance(event, AnswerRestarted):
            if self._sent_text:
                raise AggregationError(
                    f"the aggregator failed after part of the answer was streamed ({event.reason});"
                    " a streamed answer cannot be taken back, so the fallback answer is not "
                    "streamed. Retry, or call invoke() without streaming, which falls back to "
                    "the best candidate"
                )
            return None
        if isinstance(event, FusionDone):
            result = event.result
            return ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=tool_call_chunks(result.message.tool_calls),
                    usage_metadata=usage_metadata(result.usage.total),
                    response_metadata=_response_metadata(result, self.fallback_model),
                    chunk_position="last",
                )
            )
        return None
