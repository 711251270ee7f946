"""Fusion details for ``Response.metadata["polyfuse"]``: drafts, sources, citations, usage."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.response.schema import RESPONSE_TYPE

from polyfuse import FusionResult, InvalidRequestError

from .citations import cited_numbers
from .drafting import DraftPlan, GroundedFuse

__all__ = ["METADATA_KEY", "fusion_details", "fusion_result", "record_details"]

METADATA_KEY = "polyfuse"


def record_details(
    into: dict[str, Any],
    *,
    result: FusionResult,
    plan: DraftPlan,
    aggregator: GroundedFuse,
    mode: str,
    num_sources: int,
) -> None:
    """Fill ``into`` (the dict at ``Response.metadata["polyfuse"]``) from a finished fusion.

    Keys (all JSON-serialisable):

    * ``context``: how drafts saw the sources (``full``, ``partition``, ``shuffle``).
    * ``drafts``: one entry per draft: ``index``, ``backend``, ``model``, ``status``, ``text``,
      ``error``, ``sources`` (numbers its prompt showed), ``cited``, ``contribution`` (share of
      the answer's word 4-grams found in it), ``usage``, ``latency_s``.
    * ``fusor``: ``sources`` shown to the fusor, and its calls (usage, errors).
    * ``citations``: ``cited`` (valid source numbers in the answer) and ``invalid``.
    * ``omitted_sources`` / ``truncated_sources``: context-window casualties.
    * ``selected`` and ``fallback_reason``: set when the answer is a draft, not a fusion.
    * ``usage``: tokens by role and in total.
    * ``result``: the whole :class:`~polyfuse.FusionResult` (see :func:`fusion_result`).
    """
    record = result.aggregation
    contributions = record.contributions or {}
    drafts = []
    for c in result.candidates:
        drafts.append(
            {
                "index": c.index,
                "backend": c.backend,
                "model": c.model,
                "status": c.status,
                "text": c.content,
                "error": c.error.message if c.error else None,
                "sources": plan.seen[c.index] if c.index < len(plan.seen) else [],
                "cited": cited_numbers(c.text),
                "contribution": contributions.get(c.index),
                "usage": c.usage.model_dump(),
                "latency_s": c.latency_s,
            }
        )
    answer_citations = cited_numbers(result.content)
    shown = aggregator.shown
    into.update(
        {
            "context": mode,
            "drafts": drafts,
            "fusor": {
                "sources": [s.number for s in shown.sources] if shown else [],
                "omitted_sources": shown.omitted if shown else [],
                "calls": [call.model_dump(mode="json") for call in record.calls],
            },
            "citations": {
                "cited": [n for n in answer_citations if 1 <= n <= num_sources],
                "invalid": [n for n in answer_citations if not 1 <= n <= num_sources],
            },
            "omitted_sources": plan.omitted,
            "truncated_sources": plan.truncated,
            "selected": record.selected,
            "fallback_reason": record.fallback_reason,
            "usage": result.usage.model_dump_total(),
            "result": result.model_dump(mode="json"),
        }
    )


def fusion_details(response: RESPONSE_TYPE) -> dict[str, Any]:
    """The fusion details of a response from :class:`FusionSynthesizer`.

    For a streaming response they are complete once the stream has been read.

    Raises:
        InvalidRequestError: the response has none (another synthesizer, an empty retrieval,
            or a stream not read yet).
    """
    details = (response.metadata or {}).get(METADATA_KEY)
    if not details:
        raise InvalidRequestError(
            "this response has no fusion details: it did not come from FusionSynthesizer, no "
            "node was retrieved, or its stream has not been read to the end yet"
        )
    return details


def fusion_result(response: RESPONSE_TYPE) -> FusionResult:
    """The full :class:`~polyfuse.FusionResult` behind a response (every draft and call)."""
    return FusionResult.model_validate(fusion_details(response)["result"])
