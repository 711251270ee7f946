"""Mixture-of-Agents: layers of proposers refine each other's answers, then an aggregator."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..backends.base import Backend
from ..errors import AggregationError, InvalidRequestError
from ..messages import AssistantMessage, ChatRequest, SamplingParams, content_text
from ..prompts import PromptTemplate, load_prompt
from ..results import AggregationRecord, CallRecord, Candidate
from ._render import render_candidates
from .base import Aggregate, AggregationContext, Aggregator, call_model

__all__ = ["MixtureOfAgents"]


class MixtureOfAgents(Aggregator):
    """Mixture-of-Agents (Wang et al., arXiv 2406.04692).

    The pool's candidates are layer 1. Each further layer asks every proposer again, showing it
    the previous layer's answers; finally the aggregator synthesizes the last layer's answers.
    Proposers that fail are dropped from their layer (recorded); a layer in which all fail is
    skipped.

    Args:
        aggregator: the backend that writes the final answer.
        layers: total layers including the pool's own sampling (1 = aggregate the pool directly).
        proposers: backends for layers 2+ (default: the pool's members, with their sample
            counts).
    """

    method: ClassVar[str] = "moa"
    synthesizes: ClassVar[bool] = True

    def __init__(
        self,
        aggregator: Backend,
        *,
        layers: int = 2,
        proposers: Sequence[Backend] | None = None,
        prompt: PromptTemplate | None = None,
        params: SamplingParams | Mapping[str, Any] | None = None,
    ) -> None:
        if layers < 1:
            raise InvalidRequestError(f"layers must be >= 1 (got {layers})")
        self.aggregator = aggregator
        self.layers = layers
        self.proposers = list(proposers) if proposers is not None else None
        self.prompt = prompt or load_prompt("moa")
        self.params = (
            params
            if isinstance(params, SamplingParams)
            else SamplingParams.model_validate(params or {})
        )

    def __repr__(self) -> str:
        return f"MixtureOfAgents(aggregator={self.aggregator.name!r}, layers={self.layers})"

    def _messages(self, request: ChatRequest, answers: Sequence[Candidate]) -> list[dict[str, Any]]:
        system, _ = self.prompt.render(candidates=render_candidates(answers, tag="response"))
        wire = list(request.wire_messages)
        if wire and wire[0].get("role") in ("system", "developer"):
            first = dict(wire[0])
            first["role"] = "system"
            first["content"] = system + "\n\n" + content_text(wire[0].get("content"))
            return [first, *wire[1:]]
        return [{"role": "system", "content": system}, *wire]

    def _proposer_slots(self, ctx: AggregationContext) -> list[Backend]:
        if self.proposers is not None:
            return self.proposers
        return [m.backend for m in ctx.pool.members for _ in range(m.samples)]

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Run the extra layers, then the aggregator."""
        answers = list(ctx.candidates)
        calls: list[CallRecord] = []
        notes: list[str] = []
        params = ctx.request.params.merged(self.params)
        for layer in range(2, self.layers + 1):
            messages = self._messages(ctx.request, answers)
            records = await asyncio.gather(
                *(
                    call_model(backend, messages, params, role="proposer", note=f"layer {layer}")
                    for backend in self._proposer_slots(ctx)
                )
            )
            calls.extend(records)
            refined = [
                Candidate(
                    index=i,
                    backend=r.backend,
                    model=r.model,
                    content=r.content,
                    tool_calls=r.tool_calls,
                    usage=r.usage,
                )
                for i, r in enumerate(records)
                if r.error is None and ((r.content or "").strip() or r.tool_calls)
            ]
            if refined:
                answers = refined
            else:
                notes.append(f"every proposer of layer {layer} failed; kept layer {layer - 1}")
        final = await call_model(
            self.aggregator,
            self._messages(ctx.request, answers),
            params,
            role="aggregator",
            on_token=ctx.on_token,
        )
        calls.append(final)
        record = AggregationRecord(method=self.method, calls=calls, notes=notes)
        if final.error is not None:
            raise AggregationError(
                f"the MoA aggregator {self.aggregator.name} failed: {final.error.message}",
                record=record,
            )
        if not (final.content or "").strip() and not final.tool_calls:
            raise AggregationError(
                f"the MoA aggregator {self.aggregator.name} returned an empty answer", record=record
            )
        message = AssistantMessage(content=final.content, tool_calls=final.tool_calls)
        return Aggregate(message=message, record=record, streamed=ctx.on_token is not None)
