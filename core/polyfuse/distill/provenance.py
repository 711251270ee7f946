"""Provenance: where a record came from — teachers and their raw answers, every aggregation,
the judge's scores, usage by role and cost — as plain JSON-ready data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..aggregators import Aggregate
from ..results import CallRecord, Candidate, ErrorInfo
from ..usage import Usage, UsageByRole

__all__ = [
    "aggregation_entry",
    "priced_calls",
    "teacher_entry",
    "usage_by_role",
    "usage_dict",
]


def usage_dict(usage: Usage) -> dict[str, int]:
    """Token counts as plain data (``calls_without_usage`` only when some call lacked usage)."""
    out = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "calls": usage.calls,
    }
    if usage.calls_without_usage:
        out["calls_without_usage"] = usage.calls_without_usage
    return out


def _call_usage(call: CallRecord) -> Usage:
    # A failed call is still a call; its tokens, if any, are unknown to us.
    return call.usage if call.error is None else Usage(calls=1)


def usage_by_role(candidates: Sequence[Candidate], calls: Iterable[CallRecord]) -> UsageByRole:
    """Usage of the candidates and of every aggregation call, split by role."""
    cand = Usage.sum(c.usage for c in candidates)
    aggregator = Usage()
    judge = Usage()
    for call in calls:
        usage = _call_usage(call)
        if call.role == "judge":
            judge = judge + usage
        elif call.role == "proposer":
            cand = cand + usage
        else:
            aggregator = aggregator + usage
    return UsageByRole.model_construct(candidates=cand, aggregator=aggregator, judge=judge)


def priced_calls(
    candidates: Sequence[Candidate], calls: Iterable[CallRecord]
) -> Iterator[tuple[str, str | None, Usage]]:
    """``(endpoint name, model, usage)`` of every call, for pricing."""
    for candidate in candidates:
        yield candidate.backend, candidate.model, candidate.usage
    for call in calls:
        yield call.backend, call.model, _call_usage(call)


def _error(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else {"type": error.type, "message": error.message}


def teacher_entry(candidate: Candidate) -> dict[str, Any]:
    """One teacher's raw answer (or failure)."""
    entry: dict[str, Any] = {
        "index": candidate.index,
        "name": candidate.backend,
        "model": candidate.model,
        "status": candidate.status,
        "completion": candidate.content,
    }
    if candidate.tool_calls:
        entry["tool_calls"] = [c.model_dump() for c in candidate.tool_calls]
    entry["finish_reason"] = candidate.finish_reason
    if candidate.seed is not None:
        entry["seed"] = candidate.seed
    entry["usage"] = usage_dict(candidate.usage)
    entry["error"] = _error(candidate.error)
    return entry


def _call_entry(call: CallRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "role": call.role,
        "name": call.backend,
        "model": call.model,
        "finish_reason": call.finish_reason,
        "usage": usage_dict(_call_usage(call)),
        "error": _error(call.error),
    }
    if call.note:
        entry["note"] = call.note
    return entry


def aggregation_entry(aggregate: Aggregate, score: float | None = None) -> dict[str, Any]:
    """One aggregation's answer and how it was made.

    ``score`` is the judge's score of this answer, when it was scored.
    """
    record = aggregate.record
    entry: dict[str, Any] = {
        "completion": aggregate.message.content,
    }
    if aggregate.message.tool_calls:
        entry["tool_calls"] = [c.model_dump() for c in aggregate.message.tool_calls]
    entry["selected"] = record.selected
    if record.scores is not None:
        entry["scores"] = {str(i): s for i, s in record.scores.items()}
    if record.contributions is not None:
        entry["contributions"] = {str(i): v for i, v in record.contributions.items()}
    if score is not None:
        entry["score"] = score
    entry["notes"] = list(record.notes)
    entry["calls"] = [_call_entry(call) for call in record.calls]
    return entry
