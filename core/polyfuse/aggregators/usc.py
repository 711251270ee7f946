"""Universal self-consistency: an LLM picks the response most consistent with the others."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ..backends.base import Backend
from ..errors import AggregationError
from ..messages import SamplingParams
from ..prompts import PromptTemplate, load_prompt
from ..results import AggregationRecord
from ._render import render_candidates, render_conversation
from .base import Aggregate, AggregationContext, Aggregator, call_model
from .vote import MajorityVote

__all__ = ["UniversalSelfConsistency", "parse_usc_choice"]

_PRIMARY = re.compile(r"most\s+consistent\s+response\s+is\s*:?\s*(?:response\s*)?#?\s*(\d+)", re.I)
_ANY = re.compile(r"response\s*#?\s*(\d+)", re.I)


def parse_usc_choice(text: str, count: int) -> int | None:
    """The 1-based response number the selector chose, or ``None`` if off-format/ambiguous."""
    match = _PRIMARY.search(text)
    if match and 1 <= int(match.group(1)) <= count:
        return int(match.group(1))
    mentioned = {int(m) for m in _ANY.findall(text) if 1 <= int(m) <= count}
    if len(mentioned) == 1:
        return mentioned.pop()
    stripped = text.strip().strip(".")
    if stripped.isdigit() and 1 <= int(stripped) <= count:
        return int(stripped)
    return None


class UniversalSelfConsistency(Aggregator):
    """USC (Chen et al., arXiv 2311.17311): the selector names the most consistent response.

    When the selector answers off-format, falls back to an exact-match majority vote (or the
    first candidate) and records it.
    """

    method: ClassVar[str] = "usc"

    def __init__(
        self,
        selector: Backend,
        *,
        prompt: PromptTemplate | None = None,
        params: SamplingParams | Mapping[str, Any] | None = None,
    ) -> None:
        self.selector = selector
        self.prompt = prompt or load_prompt("usc")
        base: dict[str, Any] = {"temperature": 0.0, "max_tokens": 64}
        if isinstance(params, SamplingParams):
            base.update(params.model_dump(exclude_unset=True))
        elif params:
            base.update(params)
        self.params = SamplingParams.model_validate(base)

    def __repr__(self) -> str:
        return f"UniversalSelfConsistency(selector={self.selector.name!r})"

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Ask the selector, parse its choice, fall back visibly."""
        candidates = ctx.candidates
        system, user = self.prompt.render(
            conversation=render_conversation(ctx.request),
            candidates=render_candidates(candidates, tag="response"),
        )
        call = await call_model(
            self.selector,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            self.params,
            role="aggregator",
            model_role="selector",
        )
        if call.error is not None:
            raise AggregationError(
                f"the USC selector {self.selector.name} failed: {call.error.message}",
                record=AggregationRecord(method=self.method, calls=[call]),
            )
        choice = parse_usc_choice(call.content or "", len(candidates))
        if choice is not None:
            chosen = candidates[choice - 1]
            record = AggregationRecord(method=self.method, selected=chosen.index, calls=[call])
            return Aggregate(message=chosen.message(), record=record)
        fallback = MajorityVote("exact").vote(candidates)
        record = fallback.record
        record.method = self.method
        record.calls = [call]
        record.fallback_reason = (
            f"the selector answered off-format ({(call.content or '')[:120]!r}); "
            f"fell back to an exact-match vote, which picked #{record.selected}"
        )
        return Aggregate(message=fallback.message, record=record)
