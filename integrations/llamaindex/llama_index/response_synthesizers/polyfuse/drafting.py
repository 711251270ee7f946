"""Building one fusion per synthesis: draft prompts, the pool that samples them, and the
aggregator that fuses drafts against the sources.

Drafts go through polyfuse's own sampling (one :class:`~polyfuse.Pool`, so ``n`` batching,
quorum, deadlines and retries apply) and are fused by polyfuse's :class:`~polyfuse.Fuse`.
Each pool member is a :class:`PromptedBackend`: a drafting model bound to the prompt of its
slice of the sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from llama_index.core.prompts import BasePromptTemplate

from polyfuse import (
    Aggregate,
    AggregationContext,
    Aggregator,
    Backend,
    ChatRequest,
    Completion,
    Fuse,
    Pool,
    PoolMember,
    SamplingParams,
    StreamDelta,
)

from .citations import cited_numbers
from .prompts import draft_messages, fuse_template
from .sources import (
    ContextMode,
    Packed,
    Source,
    TokenCounter,
    layouts,
    pack,
    render_sources,
)

__all__ = ["DraftPlan", "Drafter", "GroundedFuse", "PromptedBackend", "plan_drafts"]

_PER_MESSAGE_TOKENS = 4  # role markers and separators a chat template adds per message


@dataclass(frozen=True)
class Drafter:
    """A drafting model and the window its prompts must fit."""

    backend: Backend
    context_window: int
    num_output: int


class PromptedBackend:
    """A backend bound to one draft prompt: every request it gets is answered with that prompt
    and the request's sampling parameters."""

    def __init__(self, inner: Backend, prompt: ChatRequest) -> None:
        self.inner = inner
        self._prompt = prompt

    @property
    def name(self) -> str:
        """The drafting model's label."""
        return self.inner.name

    @property
    def model(self) -> str:
        """The drafting model."""
        return self.inner.model

    @property
    def supports_n(self) -> bool | None:  # type: ignore[override]
        """Shared with the drafting model (polyfuse learns it once per backend)."""
        return self.inner.supports_n

    @supports_n.setter
    def supports_n(self, value: bool | None) -> None:
        self.inner.supports_n = value

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The draft prompt this backend sends."""
        return self._prompt.wire_messages

    def __repr__(self) -> str:
        return f"PromptedBackend({self.inner!r})"

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """Answer the bound prompt with ``request``'s parameters."""
        return await self.inner.complete(self._prompt.with_params(request.params), n=n)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream the answer to the bound prompt with ``request``'s parameters."""
        return self.inner.stream(self._prompt.with_params(request.params))

    async def aclose(self) -> None:
        """Nothing to do: the drafting model is shared and closed by its owner."""


@dataclass
class DraftPlan:
    """The drafts of one synthesis.

    Attributes:
        request: the first draft's prompt with the draft parameters (the fusion's request).
        pool: one member per distinct (model, prompt), sampled as many times as drafts need.
        seen: for each candidate index, the source numbers its prompt showed.
        sources: every source some draft saw, in number order (what the fusor may see).
        omitted: sources no draft saw (the windows were full).
        truncated: sources cut short in at least one draft prompt.
    """

    request: ChatRequest
    pool: Pool
    seen: list[list[int]]
    sources: list[Source]
    omitted: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)


def count_messages(messages: Sequence[dict[str, Any]], count: TokenCounter) -> int:
    """Approximate prompt tokens of chat messages (text content only)."""
    text = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    return count(text) + _PER_MESSAGE_TOKENS * len(messages)


def plan_drafts(
    *,
    query: str,
    sources: Sequence[Source],
    drafters: Sequence[Drafter],
    num_drafts: int,
    mode: ContextMode,
    prompt: BasePromptTemplate,
    params: SamplingParams,
    count: TokenCounter,
) -> DraftPlan:
    """Lay out, fit and group the draft prompts (draft ``i`` is written by drafter
    ``i % len(drafters)``).

    Raises:
        ContextWindowError: the query does not fit a drafting model's window.
    """
    views = layouts(sources, num_drafts, mode)
    overhead = count_messages(draft_messages(prompt, query=query, context=""), count)
    groups: dict[tuple[int, str], _Group] = {}  # (drafter, rendered sources), first-seen order
    seen_any: dict[int, Source] = {}
    truncated: set[int] = set()
    for i, view in enumerate(views):
        drafter = drafters[i % len(drafters)]
        packed = pack(
            view,
            budget=drafter.context_window - drafter.num_output - overhead,
            count=count,
            what=f"the draft prompt for {drafter.backend.name}",
        )
        truncated.update(packed.truncated)
        for source in packed.sources:
            seen_any.setdefault(source.number, source)
        context = render_sources(packed.sources)
        group = groups.get((i % len(drafters), context))
        if group is None:
            groups[(i % len(drafters), context)] = _Group(drafter, packed, context)
        else:
            group.samples += 1
    prompts: dict[str, ChatRequest] = {}  # one encoded prompt per distinct context
    members: list[PoolMember] = []
    seen: list[list[int]] = []
    for group in groups.values():
        bound = prompts.get(group.context)
        if bound is None:
            messages = draft_messages(prompt, query=query, context=group.context)
            bound = prompts[group.context] = ChatRequest.from_wire(messages, SamplingParams())
        # PromptedBackend is a Backend; its supports_n is a property that delegates to the
        # drafting model (so what polyfuse learns about n persists), which type checkers
        # do not match with the protocol's plain attribute.
        view = cast(Backend, PromptedBackend(group.drafter.backend, bound))
        members.append(PoolMember(view, group.samples))
        seen.extend([[s.number for s in group.packed.sources]] * group.samples)
    return DraftPlan(
        request=next(iter(prompts.values())).with_params(params),
        pool=Pool(members),
        seen=seen,
        sources=[seen_any[n] for n in sorted(seen_any)],
        omitted=sorted(s.number for s in sources if s.number not in seen_any),
        truncated=sorted(truncated),
    )


@dataclass
class _Group:
    """Drafts that share a drafter and a prompt: one pool member sampled ``samples`` times."""

    drafter: Drafter
    packed: Packed
    context: str
    samples: int = 1


class GroundedFuse(Aggregator):
    """polyfuse's :class:`~polyfuse.Fuse`, with the sources in the fusor's prompt.

    At aggregation time it picks the sources the fusor is shown: those the drafts cite first,
    then the others the drafts saw, as many as fit the fusor's window next to the drafts
    (shown in number order). A fusor window too small even for the drafts raises
    :class:`~.sources.ContextWindowError`, which the fusion's policy turns into a fallback
    to the best draft (recorded) or raises.

    After :meth:`aggregate`, :attr:`shown` holds what the fusor saw.
    """

    method: ClassVar[str] = "fuse"
    synthesizes: ClassVar[bool] = True

    def __init__(
        self,
        fusor: Backend,
        *,
        prompt: BasePromptTemplate,
        query: str,
        sources: Sequence[Source],
        context_window: int,
        num_output: int,
        count: TokenCounter,
        params: SamplingParams,
    ) -> None:
        self.fusor = fusor
        self.prompt = prompt
        self.query = query
        self.sources = list(sources)
        self.context_window = context_window
        self.num_output = num_output
        self.count = count
        self.params = params
        self.shown: Packed | None = None

    def __repr__(self) -> str:
        return f"GroundedFuse(fusor={self.fusor.name!r})"

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Fit the sources next to the drafts, then fuse with polyfuse's Fuse."""
        if len(ctx.candidates) == 1:  # the lone draft is the answer; Fuse makes no call
            return await Fuse(self.fusor, params=self.params).aggregate(ctx)
        bare = fuse_template(self.prompt, query=self.query, context="")
        drafts = "\n\n".join(
            f'<draft id="{i}">\n{c.text}\n</draft>' for i, c in enumerate(ctx.candidates)
        )
        overhead = (
            self.count(bare.system)
            + self.count(bare.user)
            + self.count(drafts)
            + 2 * _PER_MESSAGE_TOKENS
        )
        cited = {n for c in ctx.candidates for n in cited_numbers(c.text)}
        ordered = [s for s in self.sources if s.number in cited]
        ordered += [s for s in self.sources if s.number not in cited]
        packed = pack(
            ordered,
            budget=self.context_window - self.num_output - overhead,
            count=self.count,
            what=f"the fuse prompt for {self.fusor.name} (with {len(ctx.candidates)} drafts)",
        )
        packed.sources.sort(key=lambda s: s.number)
        self.shown = packed
        template = fuse_template(
            self.prompt, query=self.query, context=render_sources(packed.sources)
        )
        return await Fuse(self.fusor, prompt=template, params=self.params).aggregate(ctx)
