"""Pay for N only when it helps: adaptive sampling and the consensus shortcut.

**Adaptive sampling** draws the pool's N candidates in rounds — ``first`` samples, then
``step`` more at a time — and stops as soon as a stopping criterion on the answers so far says
more samples would not change the outcome:

* with an answer extractor (``last_number``, ``boxed``, ...): the Beta criterion of
  Adaptive-Consistency (Aggarwal et al., 2023). With ``v1`` and ``v2`` votes for the two most
  frequent answers, the share ``p`` of the leader among those two has the posterior
  ``Beta(v1 + 1, v2 + 1)`` under a uniform prior; sampling stops once
  ``P(p > 1/2) >= confidence``. For integer parameters that probability is a binomial tail,
  ``P(Binomial(v1 + v2 + 1, 1/2) <= v1)``, computed exactly with :func:`math.comb` (no
  numerical library needed for the one integral). It also stops, whatever the threshold, once
  the answers still to come could not overturn the leader (``v1 > v2 + remaining``).
  The defaults (``first=3``, ``confidence=0.8``) were chosen on the GSM8K replay in
  ``benchmarks/adaptive_replay.py`` (see ``docs/adaptive.md``): with N capped at 8 the paper's
  0.95 almost never stops before the vote is mathematically decided.
* for open-ended text: agreement, the mean pairwise Jaccard similarity of the candidates' word
  3-gram sets (lower-cased; texts under three words use their words); sampling stops once it
  reaches ``agreement``.

Rounds reuse the pool's sampling: a round that takes several samples of one member sends one
request with ``n`` where the server honours it. Candidates keep their pool order and indices;
seeds stay distinct across rounds.

The **consensus shortcut** returns the first agreeing candidate without calling the fusor,
judge or USC selector when every surviving candidate gives the same extracted answer (or, with
``consensus="on"`` and no extractor, when their agreement reaches ``consensus_similarity``).

Example::

    fusion = FusionSpec(pool=[model], n=8, strategy="vote",
                        adaptive={"first": 2, "confidence": 0.95}).build()
    result = fusion.run("What is 12 * 7?")
    print(result.sampling.samples_used, result.sampling.stop_reason)
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._sampling import sample_pool
from .aggregators.base import Aggregate
from .aggregators.vote import Extractor, ExtractorName, MajorityVote, default_normalise
from .events import CandidateFailed, CandidateFinished, CandidateStarted, FusionEvent
from .messages import ChatRequest
from .policy import QuorumPolicy
from .pool import Pool, PoolMember
from .results import AggregationRecord, Candidate, SamplingRecord, StopReason
from .usage import Usage

__all__ = [
    "AdaptiveSampling",
    "AnswerReader",
    "ConsensusMode",
    "StopDecision",
    "consensus_of",
    "majority_confidence",
    "majority_score",
    "beta_stop",
    "consensus_shortcut",
    "replay_adaptive",
    "sample_adaptive",
    "saved_usage",
    "stop_decision",
    "text_agreement",
]

ConsensusMode = Literal["auto", "on", "off"]
"""``auto``: shortcut only where an answer extractor decides agreement; ``on``: also on
near-identical text; ``off``: always call the aggregator."""

CONSENSUS_METHODS = frozenset({"fuse", "usc", "best_of_n"})
"""Aggregators the consensus shortcut may skip (vote makes no call; MoA rewrites by design)."""


class AdaptiveSampling(BaseModel):
    """The adaptive-sampling setting (``FusionOptions.adaptive``); N stays the most drawn.

    Args:
        first: samples in the first round; the Beta rule never stops before this many (at
            least 2 are needed to see agreement).
        step: samples added by each later round.
        confidence: the Beta criterion's threshold (answers with an extractor).
        agreement: the n-gram agreement threshold (open-ended text).
        max_rounds: the most rounds (``None``: as many as N allows); each round waits for the
            previous one, so this bounds the latency at the cost of stopping unsettled.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int = Field(default=3, ge=1)
    step: int = Field(default=1, ge=1)
    confidence: float = Field(default=0.8, gt=0.5, lt=1.0)
    agreement: float = Field(default=0.8, gt=0.0, le=1.0)
    max_rounds: int | None = Field(default=None, ge=1)


class AnswerReader:
    """Reads candidates' final answers with a vote extractor, or compares their text.

    ``extract=None`` means open-ended text: agreement is measured by :func:`text_agreement`.
    ``normalise`` maps an extracted answer to its key (``None``: the extraction is the key,
    for extractors that normalise already).
    """

    def __init__(
        self,
        extract: ExtractorName | Extractor | None,
        *,
        normalise: Callable[[str], str] | None = default_normalise,
    ) -> None:
        self.vote = None if extract is None else MajorityVote(extract, normalise=normalise)

    @property
    def criterion(self) -> Literal["beta", "text"]:
        """``beta`` with an extractor, ``text`` without."""
        return "text" if self.vote is None else "beta"

    def counts(self, candidates: Sequence[Candidate]) -> Counter[str]:
        """How many usable candidates gave each extracted answer (unreadable ones: none)."""
        if self.vote is None:
            return Counter()
        keys = self.vote.keys([c for c in candidates if c.ok])
        return Counter(k for k in keys.values() if k is not None)


def majority_confidence(top: int, second: int) -> float:
    """P(the leader's share of the top two answers > 1/2) under ``Beta(top + 1, second + 1)``.

    Equal to ``P(Binomial(top + second + 1, 1/2) <= top)`` for integer counts.
    """
    trials = top + second + 1
    return sum(math.comb(trials, k) for k in range(top + 1)) / 2**trials


def majority_score(counts: Counter[str]) -> tuple[str, int, int, float] | None:
    """The leading answer, its votes, the runner-up's votes and :func:`majority_confidence`
    (``None`` without any answer). Ties go to the answer counted first."""
    if not counts:
        return None
    ranked = counts.most_common(2)
    leader, top = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0
    return leader, top, second, majority_confidence(top, second)


def beta_stop(
    counts: Counter[str], drawn: int, remaining: int, settings: AdaptiveSampling
) -> tuple[Literal["decided", "settled"] | None, float | None]:
    """The Beta rule on answer ``counts`` after ``drawn`` samples with ``remaining`` to go:
    ``decided`` (the leader can't be overturned), ``settled`` (confidence reached, at least
    ``settings.first`` drawn) or ``None``; and the confidence."""
    scored = majority_score(counts)
    if scored is None:
        return None, None
    _, top, second, score = scored
    if top > second + remaining:
        return "decided", score
    if drawn >= settings.first and score >= settings.confidence:
        return "settled", score
    return None, score


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = text.lower().split()
    size = min(3, len(words))
    if size == 0:
        return frozenset()
    return frozenset(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


def text_agreement(texts: Sequence[str]) -> float:
    """Mean pairwise Jaccard similarity of the texts' word 3-gram sets (1.0 for < 2 texts)."""
    sets = [_shingles(t) for t in texts]
    pairs = list(combinations(sets, 2))
    if not pairs:
        return 1.0
    total = 0.0
    for a, b in pairs:
        union = a | b
        total += len(a & b) / len(union) if union else 1.0
    return total / len(pairs)


@dataclass(frozen=True, slots=True)
class StopDecision:
    """Whether to stop sampling (``reason`` set), the measured score, and a readable why."""

    reason: StopReason | None
    score: float | None
    detail: str

    @property
    def stop(self) -> bool:
        """True when sampling should stop."""
        return self.reason is not None


def stop_decision(
    candidates: Sequence[Candidate],
    reader: AnswerReader,
    settings: AdaptiveSampling,
    *,
    remaining: int = 0,
) -> StopDecision:
    """Apply the stopping criterion to the candidates drawn so far (``remaining``: how many
    more the budget N still allows)."""
    usable = [c for c in candidates if c.ok]
    if reader.vote is None:
        if len(usable) < 2:
            return StopDecision(None, None, f"{len(usable)} usable answer(s): too few to compare")
        score = text_agreement([c.text for c in usable])
        return StopDecision(
            "agreement" if score >= settings.agreement else None,
            score,
            f"agreement {score:.2f} of {len(usable)} answers (threshold {settings.agreement:g})",
        )
    counts = reader.counts(usable)
    scored = majority_score(counts)
    if scored is None:
        return StopDecision(None, None, "no extractable answer yet")
    leader, top, second, _ = scored
    reason, score = beta_stop(counts, len(candidates), remaining, settings)
    detail = (
        f"answer {leader[:40]!r} leads {top} to {second}: "
        f"P(majority) = {score or 0.0:.3f} (threshold {settings.confidence:g})"
    )
    if reason == "decided":
        detail += f"; the {remaining} sample(s) left could not overturn it"
    return StopDecision(reason, score, detail)


def _slots(pool: Pool) -> list[PoolMember]:
    """The pool's candidates in index order, one member reference per sample."""
    return [member for member in pool.members for _ in range(member.samples)]


def _round_pool(slots: Sequence[PoolMember]) -> Pool:
    """Group consecutive samples of one member so each group can be one ``n`` request."""
    grouped: list[PoolMember] = []
    for member in slots:
        if (
            grouped
            and grouped[-1].backend is member.backend
            and grouped[-1].params is member.params
        ):
            last = grouped.pop()
            grouped.append(PoolMember(last.backend, samples=last.samples + 1, params=last.params))
        else:
            grouped.append(PoolMember(member.backend, samples=1, params=member.params))
    return Pool(grouped)


def _shift_seed(request: ChatRequest, pool: Pool, offset: int) -> tuple[ChatRequest, Pool]:
    """Shift the seeds by ``offset`` so later rounds don't repeat the first round's samples."""
    if request.params.seed is not None:
        request = request.with_params(
            request.params.model_copy(update={"seed": request.params.seed + offset})
        )
    members: list[PoolMember] = []
    for member in pool.members:
        if member.params.seed is not None:
            shifted = member.params.model_copy(update={"seed": member.params.seed + offset})
            member = PoolMember(member.backend, samples=member.samples, params=shifted)
        members.append(member)
    return request, Pool(members)


def _reindexed(
    emit: Callable[[FusionEvent], None] | None, offset: int
) -> Callable[[FusionEvent], None] | None:
    if emit is None:
        return None

    def forward(event: FusionEvent) -> None:
        if isinstance(event, CandidateStarted):
            emit(CandidateStarted(index=event.index + offset, backend=event.backend))
        elif isinstance(event, CandidateFinished):
            emit(CandidateFinished(_moved(event.candidate, offset)))
        elif isinstance(event, CandidateFailed):
            emit(CandidateFailed(_moved(event.candidate, offset)))
        else:
            emit(event)

    return forward


def _moved(candidate: Candidate, offset: int) -> Candidate:
    return candidate.model_copy(update={"index": candidate.index + offset})


async def sample_adaptive(
    pool: Pool,
    request: ChatRequest,
    policy: QuorumPolicy,
    settings: AdaptiveSampling,
    reader: AnswerReader,
    on_event: Callable[[FusionEvent], None] | None = None,
) -> tuple[list[Candidate], SamplingRecord]:
    """Sample ``pool`` in rounds until ``settings``' criterion is met or all N are drawn.

    ``policy.deadline`` bounds the whole sampling (a round started before it may finish);
    ``policy.quorum`` is not used here (adaptive sampling decides when enough answered).
    """
    slots = _slots(pool)
    record = SamplingRecord(criterion=reader.criterion, max_samples=len(slots))
    candidates: list[Candidate] = []
    if not slots:
        return candidates, record
    started = time.perf_counter()
    round_policy = policy.model_copy(update={"quorum": None})
    while len(candidates) < len(slots):
        if policy.deadline is not None:
            left = policy.deadline - (time.perf_counter() - started)
            if left <= 0 and any(c.ok for c in candidates):
                record.stop_reason = "deadline"
                record.detail = f"the deadline of {policy.deadline:g}s passed"
                break
            round_policy = round_policy.model_copy(update={"deadline": max(left, 1e-3)})
        offset = len(candidates)
        size = settings.first if offset == 0 else settings.step
        round_slots = slots[offset : offset + size]
        sub_request, sub_pool = _shift_seed(request, _round_pool(round_slots), offset)
        drawn = await sample_pool(sub_pool, sub_request, round_policy, _reindexed(on_event, offset))
        candidates.extend(_moved(c, offset) for c in drawn)
        record.rounds.append(len(round_slots))
        if _round_done(record, candidates, reader, settings):
            break
    record.samples_used = len(candidates)
    return candidates, record


def _round_done(
    record: SamplingRecord,
    candidates: Sequence[Candidate],
    reader: AnswerReader,
    settings: AdaptiveSampling,
) -> bool:
    """Apply the stopping criterion after a round; record why sampling stops (if it does)."""
    remaining = record.max_samples - len(candidates)
    decision = stop_decision(candidates, reader, settings, remaining=remaining)
    record.score = decision.score
    record.detail = decision.detail
    if decision.reason is not None:
        record.stop_reason = decision.reason
    elif remaining <= 0:
        record.stop_reason = "exhausted"
    elif settings.max_rounds is not None and len(record.rounds) >= settings.max_rounds:
        record.stop_reason = "max_rounds"
        record.detail += f"; stopped after max_rounds={settings.max_rounds}"
    else:
        return False
    return True


def replay_adaptive(
    candidates: Sequence[Candidate], reader: AnswerReader, settings: AdaptiveSampling
) -> tuple[list[Candidate], SamplingRecord]:
    """The samples adaptive sampling would have drawn, had ``candidates`` (all N of them, in
    the order they are given) been its samples: the same rounds and the same stopping rule as
    :func:`sample_adaptive`, without a call. ``polyfuse eval`` measures adaptive strategies
    this way on a pool drawn (or recorded) once."""
    record = SamplingRecord(criterion=reader.criterion, max_samples=len(candidates))
    drawn: list[Candidate] = []
    while len(drawn) < len(candidates):
        size = settings.first if not drawn else settings.step
        batch = candidates[len(drawn) : len(drawn) + size]
        drawn.extend(batch)
        record.rounds.append(len(batch))
        if _round_done(record, drawn, reader, settings):
            break
    record.samples_used = len(drawn)
    return drawn, record


def consensus_of(
    candidates: Sequence[Candidate], reader: AnswerReader, *, similarity: float | None
) -> str | None:
    """Why the candidates agree (a note), or ``None`` when they don't.

    With an extractor: every candidate gave the same readable answer. Without one, only when
    ``similarity`` is given: their :func:`text_agreement` reaches it.
    """
    if len(candidates) < 2:
        return None
    if reader.vote is not None:
        keys = reader.vote.keys(list(candidates))
        answers = set(keys.values())
        if len(answers) == 1 and None not in answers:
            answer = next(iter(answers)) or ""
            return f"all {len(candidates)} candidates answered {answer[:80]!r}"
        return None
    if similarity is None:
        return None
    score = text_agreement([c.text for c in candidates])
    if score >= similarity:
        return (
            f"the {len(candidates)} candidates agree: word 3-gram agreement {score:.2f} "
            f">= {similarity:g}"
        )
    return None


def consensus_shortcut(
    method: str,
    usable: Sequence[Candidate],
    reader: AnswerReader,
    mode: ConsensusMode,
    similarity: float,
) -> Aggregate | None:
    """The first agreeing candidate as ``method``'s answer, without its call, when the
    candidates agree (see :func:`consensus_of`); ``None`` when the aggregator must run.

    ``mode``: ``off`` never shortcuts, ``auto`` only where ``reader`` has an extractor, ``on``
    also on near-identical text (word 3-gram agreement >= ``similarity``). Only the methods in
    :data:`CONSENSUS_METHODS` are shortcut.
    """
    if mode == "off" or method not in CONSENSUS_METHODS:
        return None
    why = consensus_of(usable, reader, similarity=similarity if mode == "on" else None)
    if why is None:
        return None
    first = min(usable, key=lambda c: c.index)
    record = AggregationRecord(
        method=method,
        selected=first.index,
        notes=[f"consensus shortcut: {why}; returned #{first.index} without the call"],
    )
    return Aggregate(message=first.message(), record=record)


def saved_usage(
    candidates: Sequence[Candidate], skipped_samples: int, aggregator_skipped: bool
) -> Usage:
    """Calls not made, with tokens estimated from what the candidates spent.

    A skipped sample is estimated as the mean spent per successful candidate (a request with
    ``n`` reports its usage once, so the candidates' usage is summed before dividing); a
    skipped aggregator call as a prompt holding that mean prompt plus every candidate's
    completion, and a completion as long as the mean candidate's. When a candidate's server
    reported no usage the saved calls are counted in ``calls_without_usage`` with no tokens:
    polyfuse never invents numbers it cannot ground.
    """
    ok = [c for c in candidates if c.ok]
    spent = Usage.sum(c.usage for c in ok)
    calls = skipped_samples + (1 if aggregator_skipped else 0)
    if not calls:
        return Usage()
    if not ok or not spent.complete or spent.calls == 0:
        return Usage.model_construct(
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            calls=calls,
            calls_without_usage=calls,
        )
    mean_prompt = spent.prompt_tokens / len(ok)
    mean_completion = spent.completion_tokens / len(ok)
    prompt = skipped_samples * mean_prompt
    completion = skipped_samples * mean_completion
    if aggregator_skipped:
        prompt += mean_prompt + spent.completion_tokens
        completion += mean_completion
    prompt_tokens, completion_tokens = round(prompt), round(completion)
    return Usage.model_construct(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        calls=calls,
        calls_without_usage=0,
    )
