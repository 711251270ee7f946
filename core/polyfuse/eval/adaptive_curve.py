"""Adaptive stopping replayed over a recorded pool at several confidence thresholds: accuracy
against candidate calls, next to the full majority vote (``polyfuse eval --replay
--adaptive-curve``).

Each prompt's panel is drawn in ``orders`` random orders (a fresh permutation per prompt and
order, seeded). In each order the full vote counts every answer, and adaptive stopping draws
``first`` answers, then ``step`` at a time, until :func:`polyfuse.adaptive.beta_stop` says the
majority is settled or decided — the rule live adaptive sampling uses. A prompt's score is its
accuracy averaged over the orders; CIs are paired bootstrap intervals over prompts. Answers are
read as the row's grader reads them (the same keys as ``vote``), from a
:class:`~polyfuse.eval.sweep.GradedPool` graded once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..adaptive import AdaptiveSampling, beta_stop
from .errors import EvalConfigError
from .stats import Estimate, bootstrap
from .sweep import GradedPool

__all__ = ["FULL_VOTE", "CurvePoint", "adaptive_curve", "samples_drawn"]

FULL_VOTE = "full vote"
"""The label of the curve's reference point: every answer counted."""


@dataclass(frozen=True)
class CurvePoint:
    """One setting's accuracy (with CI), its difference from the full vote (paired CI) and its
    mean candidate calls per prompt, of ``max_calls`` (the mean panel size)."""

    label: str
    confidence: float | None
    accuracy: Estimate
    delta: Estimate | None
    calls: float
    max_calls: float

    @property
    def saved_share(self) -> float:
        """The share of candidate calls not made, against drawing every answer."""
        return 1 - self.calls / self.max_calls if self.max_calls else 0.0


def _vote(keys: Sequence[str | None], scores: Sequence[float]) -> float:
    """The score of the majority answer among ``keys`` (ties: seen first; no answer: the first
    member's score)."""
    counts: Counter[str] = Counter(k for k in keys if k is not None)
    if not counts:
        return scores[0]
    first: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key is not None:
            first.setdefault(key, position)
    winner = max(counts, key=lambda k: (counts[k], -first[k]))
    return scores[first[winner]]


def samples_drawn(keys: Sequence[str | None], settings: AdaptiveSampling) -> int:
    """How many of ``keys`` (answer keys in draw order, ``None``: unreadable) adaptive sampling
    draws before it stops: :func:`~polyfuse.adaptive.replay_adaptive`'s rule on bare keys."""
    counts: Counter[str] = Counter()
    drawn = rounds = 0
    total = len(keys)
    while drawn < total:
        size = settings.first if drawn == 0 else settings.step
        for key in keys[drawn : drawn + size]:
            if key is not None:
                counts[key] += 1
        drawn = min(drawn + size, total)
        rounds += 1
        if beta_stop(counts, drawn, total - drawn, settings)[0] is not None:
            break
        if settings.max_rounds is not None and rounds >= settings.max_rounds:
            break
    return drawn


def adaptive_curve(
    graded: GradedPool,
    *,
    settings: AdaptiveSampling,
    confidences: Sequence[float],
    panel: Sequence[str] | None = None,
    orders: int = 20,
    seed: int = 0,
    resamples: int = 2000,
) -> list[CurvePoint]:
    """The full vote and adaptive stopping at each of ``confidences`` (with ``settings``'
    ``first``, ``step`` and ``max_rounds``) over ``panel`` (default: every model)."""
    models = list(panel) if panel is not None else list(graded.models)
    unknown = [m for m in models if m not in graded.models]
    if unknown:
        raise EvalConfigError(f"no answers from {', '.join(unknown)} in the pools")
    if orders < 1:
        raise EvalConfigError(f"orders must be at least 1 (got {orders})")
    rules = {
        f"confidence {c:g}": settings.model_copy(update={"confidence": c})
        for c in sorted(set(confidences))
    }
    labels = [FULL_VOTE, *rules]
    values: dict[str, list[float | None]] = {label: [] for label in labels}
    calls: dict[str, int] = dict.fromkeys(labels, 0)
    panel_sizes = 0
    answered = 0
    rng = random.Random(seed)
    for keys, scores in zip(graded.keys, graded.scores, strict=True):
        members = [m for m in models if m in scores]
        if not members:
            for label in labels:
                values[label].append(None)
            continue
        answered += 1
        panel_sizes += len(members)
        totals: dict[str, float] = dict.fromkeys(labels, 0.0)
        for _ in range(orders):
            drawn = rng.sample(members, len(members))
            drawn_keys = [keys.get(m) for m in drawn]
            drawn_scores = [scores[m] for m in drawn]
            totals[FULL_VOTE] += _vote(drawn_keys, drawn_scores)
            calls[FULL_VOTE] += len(drawn)
            for label, rule in rules.items():
                used = samples_drawn(drawn_keys, rule)
                totals[label] += _vote(drawn_keys[:used], drawn_scores[:used])
                calls[label] += used
        for label in labels:
            values[label].append(totals[label] / orders)
    estimates, comparisons = bootstrap(values, resamples=resamples)
    deltas: Mapping[str, Estimate] = {
        c.b: Estimate(-c.diff.mean, -c.diff.high, -c.diff.low, c.diff.n, c.diff.level)
        for c in comparisons
        if c.a == FULL_VOTE
    }
    prompts = max(answered, 1)
    return [
        CurvePoint(
            label=label,
            confidence=None if label == FULL_VOTE else rules[label].confidence,
            accuracy=estimates[label],
            delta=deltas.get(label),
            calls=calls[label] / (prompts * orders),
            max_calls=panel_sizes / prompts,
        )
        for label in labels
    ]
