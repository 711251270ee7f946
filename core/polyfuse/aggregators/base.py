"""The aggregator interface and the helpers aggregators share."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..backends.base import Backend, StreamAccumulator
from ..errors import PolyfuseError
from ..messages import AssistantMessage, ChatRequest, ModelRole, SamplingParams
from ..policy import QuorumPolicy
from ..pool import Pool
from ..results import AggregationRecord, CallRecord, CallRole, Candidate, ErrorInfo

__all__ = ["Aggregate", "AggregationContext", "Aggregator", "call_model"]


@dataclass
class AggregationContext:
    """What an aggregator gets: the request, the usable candidates, and where they came from.

    ``on_token`` is set when the caller streams the answer: synthesis aggregators call it with
    each piece of text as it arrives.
    """

    request: ChatRequest
    candidates: list[Candidate]
    pool: Pool
    policy: QuorumPolicy = field(default_factory=QuorumPolicy)
    on_token: Callable[[str], None] | None = None


@dataclass
class Aggregate:
    """An aggregator's answer, its record, and whether its text was already streamed."""

    message: AssistantMessage
    record: AggregationRecord
    streamed: bool = False


class Aggregator(ABC):
    """Turns the candidates into one answer.

    Selection aggregators (Best-of-N, vote, USC) return one of the candidates; synthesis
    aggregators (Fuse, Mixture-of-Agents) write a new answer. Raise a
    :class:`~polyfuse.errors.PolyfuseError` on failure: the fusion then falls back to the best
    surviving candidate (if its policy allows) and records why.
    """

    method: ClassVar[str]
    synthesizes: ClassVar[bool] = False

    @abstractmethod
    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Aggregate ``ctx.candidates`` into one answer."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_MODEL_ROLE: dict[CallRole, ModelRole] = {
    "candidate": "candidate",
    "aggregator": "fusor",
    "judge": "judge",
    "proposer": "proposer",
}


async def call_model(
    backend: Backend,
    messages: Sequence[dict[str, Any]],
    params: SamplingParams,
    *,
    role: CallRole,
    model_role: ModelRole | None = None,
    on_token: Callable[[str], None] | None = None,
    note: str | None = None,
) -> CallRecord:
    """Call ``backend`` once (streaming when ``on_token`` is given) and record the call.

    ``role`` is the record's accounting role; ``model_role`` is what the backend sees as
    :attr:`ChatRequest.role` (default: ``fusor`` for the aggregator, else ``role`` itself).
    Backend failures are recorded on the returned record (``error`` set), not raised; the caller
    decides what a failure means.
    """
    request = ChatRequest.from_wire(list(messages), params).for_role(
        model_role or _MODEL_ROLE[role]
    )
    started = time.perf_counter()
    try:
        if on_token is None:
            completion = (await backend.complete(request, n=1))[0]
            completion.latency_s = time.perf_counter() - started
        else:
            acc = StreamAccumulator()
            iterator = backend.stream(request)
            try:
                async for delta in iterator:
                    if delta.content:
                        if acc.ttft_s is None:
                            acc.ttft_s = time.perf_counter() - started
                        on_token(delta.content)
                    acc.add(delta)
            finally:
                await iterator.aclose()  # type: ignore[attr-defined]
            completion = acc.completion(time.perf_counter() - started)
    except PolyfuseError as exc:
        return CallRecord(
            role=role,
            backend=backend.name,
            model=backend.model,
            latency_s=time.perf_counter() - started,
            error=ErrorInfo.from_exception(exc),
            note=note,
            retries=getattr(exc, "retries", 0),
        )
    return CallRecord.model_construct(
        role=role,
        backend=backend.name,
        model=completion.model or backend.model,
        content=completion.content,
        tool_calls=completion.tool_calls,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
        latency_s=completion.latency_s,
        ttft_s=completion.ttft_s,
        error=None,
        note=note,
        retries=completion.retries,
    )
