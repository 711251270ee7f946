"""One prompt → one generation record: the candidate pool drawn ONCE (or read from a recorded
pool), then every strategy run over that same pool, each with its own answer, tokens, calls,
latency and cost.

Strategies: ``single`` (the pool's first answer: what one call gives), ``vote`` (majority over
the answers as the row's grader reads them), ``best-of-n``, ``usc``, ``fuse`` and ``moa`` (the
aggregators of :mod:`polyfuse.aggregators`). A strategy that fails is recorded as failed on that
prompt (with the spend it had); the other strategies' results are kept.

``adaptive-vote``, ``adaptive-fuse``, ``adaptive-usc`` and ``adaptive-best-of-n`` are those
strategies with adaptive sampling and the consensus shortcut (:mod:`polyfuse.adaptive`): the
samples adaptive sampling would have drawn are replayed from the same pool
(:func:`~polyfuse.adaptive.replay_adaptive`; in pool order live, in a random order per prompt
for recorded pools), the strategy runs over them, and its spend is theirs — so an adaptive
strategy and its full-pool counterpart are compared on the same answers. The entry records the
order, the rounds and why sampling stopped (``sampling``) and the consensus note (``consensus``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..adaptive import (
    AdaptiveSampling,
    AnswerReader,
    ConsensusMode,
    consensus_shortcut,
    replay_adaptive,
)
from ..aggregators import Aggregate, AggregationContext, Aggregator, MajorityVote
from ..aggregators.vote import ExtractorName
from ..distill.inputs import PromptRow
from ..distill.outcome import RowOutcome, encode_line
from ..distill.pricing import PriceTable
from ..distill.provenance import priced_calls
from ..errors import AggregationError, PolyfuseError
from ..messages import ChatRequest, SamplingParams
from ..policy import QuorumPolicy
from ..pool import Pool
from ..results import CallRecord, Candidate, ErrorInfo
from ..usage import Usage
from .graders import answer_key, grader_for
from .rows import EvalRow

__all__ = [
    "ADAPTIVE_PREFIX",
    "ADAPTIVE_STRATEGIES",
    "EVAL_STRATEGIES",
    "EvalProcessor",
    "EvalSetup",
    "base_strategy",
    "recorded_candidates",
]

ADAPTIVE_PREFIX = "adaptive-"
ADAPTIVE_STRATEGIES: tuple[str, ...] = (
    "adaptive-vote",
    "adaptive-fuse",
    "adaptive-usc",
    "adaptive-best-of-n",
)
"""Strategies measured with adaptive sampling and the consensus shortcut (see the module doc)."""
EVAL_STRATEGIES: tuple[str, ...] = (
    "single",
    "best-of-n",
    "vote",
    "usc",
    "fuse",
    "moa",
    *ADAPTIVE_STRATEGIES,
)
"""Every strategy ``polyfuse eval`` can compare."""


def base_strategy(name: str) -> str:
    """The strategy an adaptive one runs over its samples (``adaptive-fuse`` → ``fuse``)."""
    return name.removeprefix(ADAPTIVE_PREFIX)


@dataclass
class EvalSetup:
    """What the processor needs besides the row.

    Args:
        strategies: the strategies to run, in report order.
        aggregators: the model-backed aggregators by strategy name (``best-of-n``, ``usc``,
            ``fuse``, ``moa``); ``single`` and ``vote`` need none.
        fingerprint: the configuration's hash (stored in every line for resume checks).
        pool: where live candidates come from (``None`` when every row has recorded ones).
        policy: the quorum policy for live sampling.
        params: the sampling parameters of live sampling.
        prices: per-model prices.
        grader: a grader name that overrides the rows' (decides the vote's answer keys).
        context_pool: the pool aggregators see when candidates are replayed: MoA asks its
            members for the layers after the recorded one; the others only need a pool object.
        adaptive: the stopping rule of the adaptive strategies.
        answer_extract: how the adaptive strategies read an answer (``None``: the row's
            grader's reading where the row is verifiable, else open-ended text agreement).
        consensus / consensus_similarity: the consensus shortcut of the adaptive strategies.
        shuffle_seed: draw the adaptive strategies' samples in a random order per prompt
            (seeded by this and the prompt; recorded pools), or ``None``: in pool order.
    """

    strategies: tuple[str, ...]
    aggregators: dict[str, Aggregator]
    fingerprint: str
    pool: Pool | None = None
    policy: QuorumPolicy = field(default_factory=QuorumPolicy)
    params: SamplingParams = field(default_factory=SamplingParams)
    prices: PriceTable = field(default_factory=lambda: PriceTable({}))
    grader: str | None = None
    context_pool: Pool | None = None
    adaptive: AdaptiveSampling = field(default_factory=AdaptiveSampling)
    answer_extract: ExtractorName | None = None
    consensus: ConsensusMode = "auto"
    consensus_similarity: float = 0.9
    shuffle_seed: int | None = None


def recorded_candidates(raw: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Candidates from a pools-file list ``[{model, text, usage, latency_s}]``."""
    out: list[Candidate] = []
    for index, item in enumerate(raw):
        usage_data = item.get("usage") or {}
        prompt = usage_data.get("prompt_tokens")
        completion = usage_data.get("completion_tokens")
        if prompt is None and completion is None:
            usage = Usage.missing()
        else:
            usage = Usage(
                prompt_tokens=int(prompt or 0),
                completion_tokens=int(completion or 0),
                total_tokens=int(prompt or 0) + int(completion or 0),
                calls=1,
            )
        model = str(item.get("model") or "unknown")
        out.append(
            Candidate(
                index=index,
                backend=model,
                model=model,
                content=str(item.get("text") or item.get("content") or ""),
                usage=usage,
                latency_s=item.get("latency_s"),
            )
        )
    return out


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "calls": usage.calls,
        "calls_without_usage": usage.calls_without_usage,
    }


def _call_usage(call: CallRecord) -> Usage:
    return call.usage if call.error is None else Usage(calls=1, calls_without_usage=1)


def _batches(pool: Sequence[Candidate]) -> dict[int, tuple[int, int]]:
    """Candidate index → (its request's first index, how many candidates that request made).

    A request with ``n`` carries its usage on its first choice and an empty usage on the others
    (see :class:`~polyfuse.backends.Completion`): those follow it, from the same backend."""
    out: dict[int, tuple[int, int]] = {}
    lead: Candidate | None = None
    members: list[int] = []

    def close() -> None:
        if lead is not None:
            for index in members:
                out[index] = (lead.index, len(members))

    for c in sorted(pool, key=lambda c: c.index):
        if lead is not None and c.backend == lead.backend and c.usage.calls == 0:
            members.append(c.index)
            continue
        close()
        lead, members = c, [c.index]
    close()
    return out


def _as_drawn(
    drawn: Sequence[Candidate], rounds: Sequence[int], pool: Sequence[Candidate]
) -> list[Candidate]:
    """The drawn samples with the usage they would have cost drawn in these ``rounds``.

    Samples that had a request each keep their usage. Samples that shared a request with ``n``
    are re-costed as one request per round: its prompt tokens once, and the request's mean
    completion tokens per sample — an estimate, as a server reports one usage per request."""
    batches = _batches(pool)
    by_index = {c.index: c for c in pool}
    out: list[Candidate] = []
    start = 0
    for size in rounds:
        chunk = drawn[start : start + size]
        start += size
        charged: set[int] = set()
        for c in chunk:
            lead, members = batches.get(c.index, (c.index, 1))
            if members == 1:
                out.append(c)
                continue
            usage = Usage()
            if lead not in charged:
                charged.add(lead)
                spent = by_index[lead].usage
                taken = sum(1 for d in chunk if batches.get(d.index, (d.index, 1))[0] == lead)
                completion = round(spent.completion_tokens * taken / members)
                usage = Usage.model_construct(
                    prompt_tokens=spent.prompt_tokens,
                    completion_tokens=completion,
                    total_tokens=spent.prompt_tokens + completion,
                    calls=1,
                    calls_without_usage=spent.calls_without_usage,
                )
            out.append(c.model_copy(update={"usage": usage}))
    return out


class EvalProcessor:
    """Makes the generation record of each row (both distill engines call :meth:`process`)."""

    def __init__(self, setup: EvalSetup) -> None:
        self.setup = setup

    async def process(self, row: PromptRow, gate: asyncio.Semaphore | None = None) -> RowOutcome:
        """The row's generation record, or an error line when no candidate could be had."""
        started = time.perf_counter()
        eval_row = EvalRow.from_prompt_row(row)
        request = ChatRequest.from_wire(row.messages, self.setup.params)
        try:
            recorded = row.extra.get("candidates")
            if isinstance(recorded, list):
                candidates = recorded_candidates(recorded)
            elif gate is None:
                candidates = await self._sample(request)
            else:
                async with gate:
                    candidates = await self._sample(request)
        except PolyfuseError as exc:
            return self._failure(row, "sampling", exc, [], started)
        usable = [c for c in candidates if c.ok and (c.content or c.tool_calls)]
        if not usable:
            problems = "; ".join(
                f"{c.label}: {c.error.message if c.error else 'empty answer'}" for c in candidates
            )
            exc = PolyfuseError(f"no usable candidate ({problems or 'the pool is empty'})")
            return self._failure(row, "sampling", exc, candidates, started)
        results = await asyncio.gather(
            *(
                self._adaptive(name, request, eval_row, candidates)
                if name.startswith(ADAPTIVE_PREFIX)
                else self._strategy(name, request, eval_row, usable, pool=candidates)
                for name in self.setup.strategies
            )
        )
        record: dict[str, Any] = {
            "input_hash": row.input_hash,
            "config": self.setup.fingerprint,
            "line": row.line,
            "row": eval_row.to_dict(),
            "question": eval_row.question,
            "messages": eval_row.messages,  # what was asked, so the pool can be replayed exactly
            "candidates": [self._candidate_entry(c) for c in candidates],
            "strategies": dict(zip(self.setup.strategies, results, strict=True)),
            "latency_s": round(time.perf_counter() - started, 4),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        tokens = sum(c.usage.total_tokens for c in candidates) + sum(
            int(r.get("aggregation_tokens", 0)) for r in results
        )
        cost = self.setup.prices.cost(priced_calls(candidates, [])).usd or 0.0
        cost += sum(float(r.get("aggregation_cost_usd") or 0.0) for r in results)
        return RowOutcome(row.input_hash, True, encode_line(record), tokens, cost)

    async def _sample(self, request: ChatRequest) -> list[Candidate]:
        pool = self.setup.pool
        if pool is None:
            raise PolyfuseError(
                "this row has no recorded candidates and no pool was configured to sample them"
            )
        return await pool.sample(request, policy=self.setup.policy)

    def _candidate_entry(self, candidate: Candidate) -> dict[str, Any]:
        cost = self.setup.prices.cost([(candidate.backend, candidate.model, candidate.usage)])
        return {
            "index": candidate.index,
            "name": candidate.backend,
            "model": candidate.model,
            "status": candidate.status,
            "text": candidate.content,
            "usage": _usage_dict(candidate.usage),
            "latency_s": candidate.latency_s,
            "cost_usd": cost.usd,
            "error": candidate.error.message if candidate.error else None,
        }

    def _vote(self, row: EvalRow) -> MajorityVote:
        grader = self.setup.grader

        def key(candidate: Candidate) -> str | None:
            return answer_key(candidate.text, row, grader)

        return MajorityVote(key, normalise=None)

    def _reader(self, row: EvalRow) -> AnswerReader:
        """How adaptive strategies read answers: the configured extractor, else the row's
        grader (the way ``vote`` counts them), else open-ended text agreement."""
        if self.setup.answer_extract is not None:
            return AnswerReader(self.setup.answer_extract)
        if grader_for(row, self.setup.grader) is None:
            return AnswerReader(None)
        grader = self.setup.grader

        def key(candidate: Candidate) -> str | None:
            return answer_key(candidate.text, row, grader)

        return AnswerReader(key, normalise=None)

    def _draw_order(self, row: EvalRow, candidates: Sequence[Candidate]) -> list[Candidate]:
        if self.setup.shuffle_seed is None:
            return list(candidates)
        rng = random.Random(f"{self.setup.shuffle_seed}:{row.input_hash}")
        return rng.sample(list(candidates), len(candidates))

    async def _adaptive(
        self, name: str, request: ChatRequest, row: EvalRow, candidates: list[Candidate]
    ) -> dict[str, Any]:
        """An adaptive strategy: the samples adaptive sampling would have drawn from this pool,
        then the consensus shortcut or the strategy over them; spend and latency as if sampled
        in rounds."""
        base = base_strategy(name)
        reader = self._reader(row)
        drawn, sampling = replay_adaptive(
            self._draw_order(row, candidates), reader, self.setup.adaptive
        )
        drawn = _as_drawn(drawn, sampling.rounds, candidates)
        usable = [c for c in drawn if c.ok and (c.content or c.tool_calls)]
        shortcut = (
            consensus_shortcut(
                self._method(base),
                usable,
                reader,
                self.setup.consensus,
                self.setup.consensus_similarity,
            )
            if usable
            else None
        )
        if shortcut is not None:
            entry = self._entry(
                shortcut.message.content,
                shortcut.record.selected,
                usable,
                [],
                self._rounds_latency(drawn, sampling.rounds),
            )
        else:
            entry = await self._strategy(
                base, request, row, usable, latency=self._rounds_latency(drawn, sampling.rounds)
            )
        entry["sampling"] = {**sampling.model_dump(), "order": [c.index for c in drawn]}
        entry["consensus"] = shortcut.record.notes[0] if shortcut is not None else None
        return entry

    @staticmethod
    def _method(strategy: str) -> str:
        return strategy.replace("-", "_")

    @staticmethod
    def _rounds_latency(drawn: Sequence[Candidate], rounds: Sequence[int]) -> float | None:
        """The samples' wall time had they been drawn in these rounds: each round waits for
        its slowest sample (``None`` when no latency was recorded)."""
        total: float | None = None
        start = 0
        for size in rounds:
            known = [c.latency_s for c in drawn[start : start + size] if c.latency_s is not None]
            if known:
                total = (total or 0.0) + max(known)
            start += size
        return total

    async def _strategy(
        self,
        name: str,
        request: ChatRequest,
        row: EvalRow,
        usable: list[Candidate],
        *,
        latency: float | None = None,
        pool: Sequence[Candidate] = (),
    ) -> dict[str, Any]:
        """Run one strategy over the pool; its answer plus what it spent (pool included).

        ``latency``: the pool's wall time, when it is not that of its slowest candidate;
        ``pool``: every candidate drawn (to cost ``single`` as one call of one sample when the
        pool came from requests with ``n``)."""
        pool_latency = self._pool_latency(usable) if latency is None else latency
        if not usable:
            entry = self._entry(None, None, usable, [], pool_latency)
            entry["error"] = "no usable candidate"
            return entry
        if name == "single":
            first = _as_drawn([usable[0]], [1], pool or usable)[0]
            return self._entry(first.content, first.index, [first], [], first.latency_s)
        started = time.perf_counter()
        calls: list[CallRecord] = []
        try:
            if name == "vote":
                aggregate: Aggregate = self._vote(row).vote(usable)
            else:
                aggregator = self.setup.aggregators[name]
                context_pool = self.setup.pool or self.setup.context_pool
                if context_pool is None:
                    raise AggregationError(f"{name} needs a pool to run in (none configured)")
                aggregate = await aggregator.aggregate(
                    AggregationContext(
                        request=request,
                        candidates=list(usable),
                        pool=context_pool,
                        policy=self.setup.policy,
                    )
                )
        except PolyfuseError as exc:
            partial = exc.record if isinstance(exc, AggregationError) else None
            if partial is not None:
                calls.extend(partial.calls)
            entry = self._entry(None, None, usable, calls, pool_latency)
            entry["error"] = ErrorInfo.from_exception(exc).message
            return entry
        calls.extend(aggregate.record.calls)
        spent = time.perf_counter() - started
        # A vote over recorded answers takes no time worth reporting: unknown stays unknown.
        latency = None if pool_latency is None and name == "vote" else (pool_latency or 0.0) + spent
        entry = self._entry(
            aggregate.message.content, aggregate.record.selected, usable, calls, latency
        )
        if aggregate.record.fallback_reason:
            entry["fallback"] = aggregate.record.fallback_reason
        if aggregate.record.scores is not None:  # Best-of-N: each candidate's score
            entry["scores"] = {str(i): v for i, v in aggregate.record.scores.items()}
        selector = self.setup.aggregators.get(name)
        if selector is not None and not selector.synthesizes:
            # a selector's or grader's own words: why it chose (a synthesis is the answer itself)
            entry["replies"] = [c.content for c in aggregate.record.calls]
        return entry

    @staticmethod
    def _pool_latency(usable: Sequence[Candidate]) -> float | None:
        """The pool's wall time (its slowest candidate); ``None`` when none was recorded."""
        known = [c.latency_s for c in usable if c.latency_s is not None]
        return max(known) if known else None

    def _entry(
        self,
        answer: str | None,
        selected: int | None,
        used: Sequence[Candidate],
        calls: Sequence[CallRecord],
        latency_s: float | None,
    ) -> dict[str, Any]:
        pool_usage = Usage.sum(c.usage for c in used)
        agg_usage = Usage.sum(_call_usage(c) for c in calls)
        total = pool_usage + agg_usage
        cost = self.setup.prices.cost(priced_calls(used, calls))
        agg_cost = self.setup.prices.cost(priced_calls([], calls))
        return {
            "answer": answer,
            "selected": selected,
            "error": None,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "calls": total.calls,
            "calls_without_usage": total.calls_without_usage,
            "latency_s": None if latency_s is None else round(latency_s, 4),
            "cost_usd": cost.usd,
            "cost_complete": cost.complete,
            "aggregation_tokens": agg_usage.total_tokens,
            "aggregation_cost_usd": agg_cost.usd,
        }

    def _failure(
        self,
        row: PromptRow,
        stage: str,
        exc: PolyfuseError,
        candidates: Sequence[Candidate],
        started: float,
    ) -> RowOutcome:
        usage = Usage.sum(c.usage for c in candidates)
        cost = self.setup.prices.cost(priced_calls(candidates, []))
        entry = {
            "input_hash": row.input_hash,
            "config": self.setup.fingerprint,
            "line": row.line,
            "stage": stage,
            "error": {"type": type(exc).__name__, "message": str(exc)},
            "candidates": [self._candidate_entry(c) for c in candidates],
            "latency_s": round(time.perf_counter() - started, 4),
        }
        return RowOutcome(
            row.input_hash, False, encode_line(entry), usage.total_tokens, cost.usd or 0.0
        )
