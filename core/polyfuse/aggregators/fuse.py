"""Fuse (FusioN): a fusor LLM writes one answer from the strongest parts of the candidates."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar

from ..backends.base import Backend
from ..errors import AggregationError
from ..messages import AssistantMessage, SamplingParams, ToolCall
from ..prompts import PromptTemplate, load_prompt
from ..results import AggregationRecord
from ._render import render_candidates, render_conversation
from .base import Aggregate, AggregationContext, Aggregator, call_model

__all__ = ["Fuse"]


class Fuse(Aggregator):
    """Fusion-of-N (Khairi et al., arXiv 2510.00931).

    The fusor sees the request and the candidates — shuffled with a seed, under neutral labels,
    delimited and marked as untrusted — keeps their strongest parts, discards wrong or weak
    parts, and writes one answer. When the request has tools, the fusor gets them too and may
    answer with tool calls.

    Args:
        fusor: the backend that writes the fused answer.
        prompt: replaces the default ``fuse`` prompt (see :func:`polyfuse.prompts.load_prompt`).
        params: sampling parameters for the fusor on top of the request's (e.g. temperature).
        seed: shuffle seed; ``None`` derives one from the request, so a given request always
            shows the candidates in the same order.
        shuffle: shuffle the candidates before showing them (reduces position bias).
        fuse_single: still call the fusor when only one candidate survived (default: return it).
    """

    method: ClassVar[str] = "fuse"
    synthesizes: ClassVar[bool] = True

    def __init__(
        self,
        fusor: Backend,
        *,
        prompt: PromptTemplate | None = None,
        params: SamplingParams | Mapping[str, Any] | None = None,
        seed: int | None = None,
        shuffle: bool = True,
        fuse_single: bool = False,
    ) -> None:
        self.fusor = fusor
        self.prompt = prompt or load_prompt("fuse")
        self.params = (
            params
            if isinstance(params, SamplingParams)
            else SamplingParams.model_validate(params or {})
        )
        self.seed = seed
        self.shuffle = shuffle
        self.fuse_single = fuse_single

    def __repr__(self) -> str:
        return f"Fuse(fusor={self.fusor.name!r})"

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Fuse the candidates into one answer."""
        candidates = list(ctx.candidates)
        if len(candidates) == 1 and not self.fuse_single:
            only = candidates[0]
            return Aggregate(
                message=only.message(),
                record=AggregationRecord(
                    method=self.method,
                    selected=only.index,
                    notes=["only one candidate survived; returned it without calling the fusor"],
                ),
            )
        if self.shuffle:
            seed = (
                self.seed
                if self.seed is not None
                else zlib.crc32(ctx.request.messages_json.encode())
            )
            random.Random(seed).shuffle(candidates)
        system, user = self.prompt.render(
            conversation=render_conversation(ctx.request),
            candidates=render_candidates(candidates),
        )
        params = ctx.request.params.merged(self.params)
        if params.tools and not any(c.tool_calls for c in candidates):
            # No draft called a tool: the fused answer is text, so don't offer the tools.
            params = params.model_copy(
                update={"tools": None, "tool_choice": None, "parallel_tool_calls": None}
            )
        call = await call_model(
            self.fusor,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            params,
            role="aggregator",
            on_token=ctx.on_token,
            note="order shown: " + ", ".join(f"#{c.index}" for c in candidates),
        )
        record = AggregationRecord(method=self.method, calls=[call])
        if call.error is not None:
            raise AggregationError(
                f"the fusor {self.fusor.name} failed: {call.error.message}", record=record
            )
        if not (call.content or "").strip() and not call.tool_calls:
            raise AggregationError(
                f"the fusor {self.fusor.name} returned an empty answer", record=record
            )
        problem = _invalid_tool_calls(call.tool_calls, ctx.request.params.tools)
        if problem is not None:
            raise AggregationError(f"the fusor {self.fusor.name} {problem}", record=record)
        if call.finish_reason == "length":
            record.notes.append("the fused answer hit max_tokens and may be cut short")
        message = AssistantMessage(content=call.content, tool_calls=call.tool_calls)
        return Aggregate(message=message, record=record, streamed=ctx.on_token is not None)


def _invalid_tool_calls(
    calls: list[ToolCall] | None, tools: list[dict[str, Any]] | None
) -> str | None:
    """Why the fused tool calls are unusable, or ``None`` when they are valid."""
    if not calls:
        return None
    known = {tool.get("function", {}).get("name") for tool in tools or [] if isinstance(tool, dict)}
    for call in calls:
        if known and call.function.name not in known:
            return f"called an unknown tool {call.function.name!r}"
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            return f"gave {call.function.name!r} arguments that are not valid JSON"
        if not isinstance(arguments, dict):
            return f"gave {call.function.name!r} arguments that are not a JSON object"
    return None
