"""From the generation records and the judgments to numbers: per task, each strategy's quality
with a paired bootstrap CI, the differences between strategies and their significance, cost
next to quality, the quality-per-cost frontier, per-model quality, judge reliability, language
breakdowns, and a recommendation worded with its uncertainty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..distill.store import read_jsonl
from .errors import EvalDataError
from .judges import combine_orders
from .stats import Comparison, Estimate, FrontierPoint, bootstrap, frontier

__all__ = [
    "AdaptiveStats",
    "Ceiling",
    "EvalAnalysis",
    "JudgeStats",
    "StrategyCost",
    "TaskResult",
    "analyse",
    "points",
    "read_generations",
    "signed_points",
]


@dataclass(frozen=True)
class StrategyCost:
    """Mean spend per prompt of one strategy (the candidate pool included).

    ``tokens_known`` is false when no call reported usage (e.g. pools recorded without it);
    ``latency_s`` is ``None`` when no latency was recorded.
    """

    tokens: float
    calls: float
    latency_s: float | None
    cost_usd: float | None
    cost_complete: bool
    tokens_known: bool = True


@dataclass(frozen=True)
class AdaptiveStats:
    """How an adaptive strategy sampled, over a task's prompts: the mean samples it used of the
    pool's N, why sampling stopped, and how often the consensus shortcut skipped the
    aggregator's call."""

    prompts: int
    samples: float
    max_samples: float
    stop_reasons: dict[str, int]
    shortcuts: int

    @property
    def saved_share(self) -> float:
        """The share of candidate calls not made, against drawing all N."""
        return 1 - self.samples / self.max_samples if self.max_samples else 0.0


def _adaptive_stats(entries: Sequence[Mapping[str, Any]]) -> AdaptiveStats | None:
    sampled = [e for e in entries if isinstance(e.get("sampling"), Mapping)]
    if not sampled:
        return None
    n = len(sampled)
    reasons: dict[str, int] = defaultdict(int)
    for e in sampled:
        reasons[str(e["sampling"].get("stop_reason"))] += 1
    return AdaptiveStats(
        prompts=n,
        samples=sum(int(e["sampling"].get("samples_used") or 0) for e in sampled) / n,
        max_samples=sum(int(e["sampling"].get("max_samples") or 0) for e in sampled) / n,
        stop_reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        shortcuts=sum(1 for e in sampled if e.get("consensus")),
    )


def _adaptive_by_strategy(
    records: Sequence[Mapping[str, Any]], strategies: Sequence[str]
) -> dict[str, AdaptiveStats]:
    out: dict[str, AdaptiveStats] = {}
    for s in strategies:
        stats = _adaptive_stats([(r.get("strategies") or {}).get(s) or {} for r in records])
        if stats is not None:
            out[s] = stats
    return out


@dataclass(frozen=True)
class Ceiling:
    """The pool's ceiling: per prompt, the score of its best candidate.

    For accuracy this is the oracle "some candidate is right" (pass@k with k the candidates per
    prompt): no strategy that selects a candidate can beat it, and a fusor only beats it by
    writing a right answer none of the candidates had. ``gaps`` holds each strategy minus the
    ceiling on the prompts both have (paired bootstrap), i.e. how far it stays from the best
    its candidates allowed.
    """

    estimate: Estimate
    candidates: float
    gaps: dict[str, Comparison]


@dataclass
class TaskResult:
    """One task's (and metric's) results."""

    task: str
    metric: str
    prompts: int
    strategies: list[str]
    estimates: dict[str, Estimate]
    comparisons: list[Comparison]
    costs: dict[str, StrategyCost]
    frontier: list[FrontierPoint]
    frontier_usd: list[FrontierPoint] | None
    failed: dict[str, int]
    unscored: dict[str, int]
    models: dict[str, Estimate]
    languages: dict[str, dict[str, Estimate]]
    cost_unit: str = "tokens"
    recommendation: str = ""
    adaptive: dict[str, AdaptiveStats] = field(default_factory=dict[str, AdaptiveStats])
    ceiling: Ceiling | None = None
    fallbacks: dict[str, int] = field(default_factory=dict[str, int])
    """Per strategy, the prompts where its aggregator fell back (a USC selector's reply named
    no response, no Best-of-N score parsed ...): its answer there is the fallback's."""

    def spend(self, strategy: str) -> float:
        """Mean tokens per prompt, or calls when no token counts were recorded."""
        cost = self.costs[strategy]
        return cost.tokens if self.cost_unit == "tokens" else cost.calls

    def comparison(self, a: str, b: str) -> Comparison | None:
        """``a`` minus ``b`` (flipped from the stored pair when needed)."""
        for c in self.comparisons:
            if c.a == a and c.b == b:
                return c
            if c.a == b and c.b == a:
                d = c.diff
                flipped = Estimate(-d.mean, -d.high, -d.low, d.n, d.level)
                return Comparison(a, b, flipped, c.p_value)
        return None


@dataclass
class JudgeStats:
    """How the LLM judge behaved: replies, unparseable ones (never scored), position bias."""

    replies: int = 0
    unparseable: int = 0
    failed_calls: int = 0
    position: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0, "tie": 0})
    pairs: int = 0
    consistent_pairs: int = 0
    unparseable_examples: list[str] = field(default_factory=list)
    tokens: int = 0

    @property
    def position_a_share(self) -> float | None:
        """Share of decisive pairwise verdicts that picked position A (0.5 = no bias)."""
        decisive = self.position["A"] + self.position["B"]
        return self.position["A"] / decisive if decisive else None


@dataclass
class EvalAnalysis:
    """Every task's results and the judge's behaviour."""

    tasks: list[TaskResult]
    judge: JudgeStats
    prompts: int
    failed_rows: int = 0


def read_generations(path: Path) -> list[dict[str, Any]]:
    """The generation records (none when ``path`` does not exist; a torn last line is left out).

    Raises :class:`~polyfuse.eval.EvalDataError` naming the line when any other line is not a
    generation record.
    """
    return read_jsonl(
        path,
        kind="polyfuse eval generation record (no strategies)",
        accept=lambda entry: "strategies" in entry,
        error=EvalDataError,
    )


def _metric_of(kinds: set[str], opponents: set[str]) -> str:
    if "grade" in kinds:
        return "accuracy"
    if "pairwise" in kinds:
        opponent = sorted(opponents)[0] if opponents else "reference"
        return f"win rate vs {opponent}"
    return "rubric score"


class _Scores:
    """Scores per (prompt, subject), from the judgments."""

    def __init__(self, judgments: Iterable[Mapping[str, Any]]) -> None:
        self.grade: dict[tuple[str, str], float] = {}
        self.rubric: dict[tuple[str, str], float | None] = {}
        self.pairwise: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        self.kinds: dict[str, set[str]] = defaultdict(set)
        self.opponents: dict[str, set[str]] = defaultdict(set)
        self.judge = JudgeStats()
        reused: set[tuple[str, str]] = set()
        for j in judgments:
            ih, subject, kind = str(j.get("input_hash")), str(j.get("subject")), j.get("kind")
            is_candidate = subject.startswith("candidate:")
            if kind == "grade":
                self.grade[(ih, subject)] = float(j.get("score") or 0.0)
                if not is_candidate:
                    self.kinds[ih].add("grade")
                continue
            if not j.get("reused_from"):
                self._judge_reply(j)
            if kind == "rubric":
                score = j.get("score")
                self.rubric[(ih, subject)] = None if score is None else (float(score) - 1) / 9
                if not is_candidate:
                    self.kinds[ih].add("rubric")
            elif kind == "pairwise":
                self.pairwise[(ih, subject)][str(j.get("order"))] = j.get("verdict")
                if j.get("reused_from"):
                    reused.add((ih, subject))
                self.kinds[ih].add("pairwise")
                self.opponents[ih].add(str(j.get("opponent")))
        for pair, orders in self.pairwise.items():
            if pair in reused:
                continue  # the same texts were judged for another strategy: counted there
            ab, ba = orders.get("ab"), orders.get("ba")
            if ab is not None and ba is not None:
                self.judge.pairs += 1
                flipped = {"A": "B", "B": "A", "tie": "tie"}[ba]
                self.judge.consistent_pairs += int(ab == flipped)

    def _judge_reply(self, j: Mapping[str, Any]) -> None:
        stats = self.judge
        stats.replies += 1
        stats.tokens += int(j.get("prompt_tokens") or 0) + int(j.get("completion_tokens") or 0)
        if j.get("error"):
            stats.failed_calls += 1
        if not j.get("parsed"):
            stats.unparseable += 1
            if len(stats.unparseable_examples) < 5 and not j.get("error"):
                stats.unparseable_examples.append(str(j.get("raw") or "")[:300])
        if j.get("kind") == "pairwise" and j.get("verdict") is not None:
            verdict = str(j["verdict"])
            stats.position[verdict] = stats.position.get(verdict, 0) + 1

    def score(self, ih: str, subject: str, metric: str) -> float | None:
        if metric == "accuracy":
            return self.grade.get((ih, subject))
        if metric == "rubric score":
            return self.rubric.get((ih, subject))
        orders = self.pairwise.get((ih, subject))
        if not orders:
            return None
        return combine_orders(orders.get("ab"), orders.get("ba"))


def _cost(entries: Sequence[Mapping[str, Any]]) -> StrategyCost:
    n = max(len(entries), 1)
    tokens = sum(
        int(e.get("prompt_tokens", 0)) + int(e.get("completion_tokens", 0)) for e in entries
    )
    priced = [e.get("cost_usd") for e in entries]
    cost = (
        None
        if any(c is None for c in priced) or not priced
        else sum(float(c or 0) for c in priced) / n
    )
    calls = sum(int(e.get("calls", 0)) for e in entries)
    unreported = sum(int(e.get("calls_without_usage", 0)) for e in entries)
    latencies = [float(e["latency_s"]) for e in entries if e.get("latency_s") is not None]
    return StrategyCost(
        tokens=tokens / n,
        calls=calls / n,
        latency_s=sum(latencies) / len(latencies) if latencies else None,
        cost_usd=cost,
        cost_complete=all(bool(e.get("cost_complete", True)) for e in entries),
        tokens_known=unreported < calls,
    )


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def _spend(result: TaskResult) -> tuple[dict[str, float], str]:
    """Each strategy's mean tokens per prompt (or calls, when tokens were not recorded)."""
    return {s: result.spend(s) for s in result.strategies}, result.cost_unit


def points(x: float) -> str:
    """A share as percentage points with one decimal (never ``-0.0``)."""
    return f"{(round(100 * x, 1) or 0.0):.1f}"


def signed_points(x: float) -> str:
    """A difference of shares as signed percentage points, one decimal (never ``-0.0``)."""
    return f"{(round(100 * x, 1) or 0.0):+.1f}"


def _ci_text(c: Comparison) -> str:
    return f"95% CI {points(c.diff.low)} to {points(c.diff.high)}"


def _recommend(result: TaskResult) -> str:
    """Best strategy against single and the runner-up, then the cheapest one that is not
    significantly worse than the best."""
    ranked = sorted(
        (s for s in result.strategies if result.estimates[s].n),
        key=lambda s: -result.estimates[s].mean,
    )
    if not ranked:
        return (
            f"{result.task} ({result.metric}): no prompt got a verdict (see the judge's "
            "unparseable replies); nothing to recommend"
        )
    best = ranked[0]
    spend, unit = _spend(result)
    parts: list[str] = []
    described: set[str] = set()
    if "single" in ranked and best != "single":
        c = result.comparison(best, "single")
        if c is not None:
            ratio = spend[best] / spend["single"] if spend["single"] else float("nan")
            text = f"{best} {_pct(c.diff.mean)} pts over single ({_ci_text(c)}) at {ratio:.1f}× the {unit}"
            if not c.significant:
                text += ", not significant"
            parts.append(text)
            described.add("single")
    elif best == "single" and len(ranked) > 1:
        parts.append("single is best: aggregation did not help here")
    second = next((s for s in ranked[1:] if s not in described), None)
    if second is not None:
        c = result.comparison(best, second)
        if c is not None and c.significant:
            parts.append(
                f"{best} vs {second}: {_pct(c.diff.mean)} pts ({_ci_text(c)}, "
                f"p{'<0.001' if c.p_value < 0.001 else f'={c.p_value:.3f}'})"
            )
        elif c is not None:
            parts.append(
                f"{best} vs {second}: no significant difference ({_pct(c.diff.mean)} pts, "
                f"p={c.p_value:.2f})"
            )

    def worse(s: str) -> bool:
        c = result.comparison(best, s)
        return c is not None and c.significant

    tied = [s for s in ranked if s == best or not worse(s)]
    pick = min(tied, key=lambda s: (spend[s], -result.estimates[s].mean))
    if pick == best:
        parts.append(f"use {best}")
    else:
        parts.append(
            f"use {pick}: not significantly below {best} at "
            f"{spend[best] / max(spend[pick], 1e-9):.1f}× fewer {unit}"
        )
    return f"{result.task} ({result.metric}): " + "; ".join(parts) + "."


def _model_names(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], str]:
    names: dict[tuple[str, int], str] = {}
    for r in records:
        for c in r.get("candidates") or []:
            names[(str(r["input_hash"]), int(c["index"]))] = str(c.get("name") or c.get("model"))
    return names


def _task_result(
    task: str,
    metric: str,
    records: Sequence[Mapping[str, Any]],
    strategies: Sequence[str],
    scores: _Scores,
    resamples: int,
    names: Mapping[tuple[str, int], str],
    baseline: str,
) -> TaskResult:
    # Head to head, the baseline is the yardstick (0.5 by definition), not a contender.
    shown = [s for s in strategies if not (metric == f"win rate vs {baseline}" and s == baseline)]
    per: dict[str, list[float | None]] = {s: [] for s in shown}
    failed = dict.fromkeys(shown, 0)
    unscored = dict.fromkeys(shown, 0)
    for r in records:
        ih = str(r["input_hash"])
        values = {s: scores.score(ih, s, metric) for s in shown}
        # A strategy that gave no answer loses — on prompts the judge could score at all.
        judged = any(v is not None for v in values.values())
        for s in shown:
            entry = (r.get("strategies") or {}).get(s) or {}
            value = values[s]
            if entry.get("answer") is None:
                failed[s] += 1
                if metric != "accuracy" and judged:
                    value = 0.0
            if value is None:
                unscored[s] += 1
            per[s].append(value)
    estimates, comparisons = bootstrap(per, resamples=resamples)
    costs = {s: _cost([(r.get("strategies") or {}).get(s) or {} for r in records]) for s in shown}
    unit = "tokens" if all(costs[s].tokens_known for s in shown) else "calls"
    points = {
        s: (estimates[s].mean, costs[s].tokens if unit == "tokens" else costs[s].calls)
        for s in shown
        if estimates[s].n
    }
    usd = {
        s: (estimates[s].mean, costs[s].cost_usd)
        for s in shown
        if estimates[s].n and costs[s].cost_usd is not None
    }
    model_scores: dict[str, list[float | None]] = defaultdict(list)
    best: list[float | None] = []
    scored_candidates = 0
    for r in records:
        ih = str(r["input_hash"])
        by_model: dict[str, list[float]] = defaultdict(list)
        for c in r.get("candidates") or []:
            model = names.get((ih, int(c["index"])), "?")
            subject = f"candidate:{c['index']}"
            value = (
                scores.grade.get((ih, subject))
                if metric == "accuracy"
                else scores.rubric.get((ih, subject))
            )
            if value is not None:
                by_model[model].append(value)
        # A model sampled k times on a prompt counts once there, with the mean of its k scores:
        # its expected single-sample quality, not whichever sample came first.
        for model, values in by_model.items():
            model_scores[model].append(sum(values) / len(values))
        values = [v for vs in by_model.values() for v in vs]
        best.append(max(values) if values else None)
        scored_candidates += len(values)
    models = {m: _plain_estimate(v, resamples) for m, v in model_scores.items()}
    languages: dict[str, dict[str, Estimate]] = {}
    by_language: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        language = (r.get("row") or {}).get("language")
        if language:
            by_language[str(language)].append(i)
    if len(by_language) > 1:
        for language, rows in sorted(by_language.items()):
            sub = {s: [per[s][i] for i in rows] for s in shown}
            languages[language] = bootstrap(sub, resamples=resamples)[0]
    result = TaskResult(
        task=task,
        metric=metric,
        prompts=len(records),
        strategies=list(shown),
        estimates=estimates,
        comparisons=comparisons,
        costs=costs,
        frontier=frontier(points),
        frontier_usd=frontier({k: (q, float(c or 0)) for k, (q, c) in usd.items()})
        if len(usd) == len(points) and usd
        else None,
        failed=failed,
        unscored=unscored,
        models=models,
        languages=languages,
        cost_unit=unit,
    )
    result.adaptive = _adaptive_by_strategy(records, shown)
    result.fallbacks = {
        s: sum(1 for r in records if ((r.get("strategies") or {}).get(s) or {}).get("fallback"))
        for s in shown
    }
    if metric in ("accuracy", "rubric score"):  # a win rate is not on the candidates' scale
        result.ceiling = _ceiling(per, best, scored_candidates, resamples)
    result.recommendation = _recommend(result)
    return result


def _ceiling(
    per: Mapping[str, Sequence[float | None]],
    best: Sequence[float | None],
    scored_candidates: int,
    resamples: int,
) -> Ceiling | None:
    """The best candidate per prompt and each strategy's paired gap to it (``None`` when no
    candidate was scored: open-ended rows whose candidates were not judged)."""
    prompts = sum(v is not None for v in best)
    if not prompts:
        return None
    estimate = _plain_estimate(best, resamples)
    gaps: dict[str, Comparison] = {}
    for strategy, values in per.items():
        _, comparisons = bootstrap({strategy: values, "ceiling": best}, resamples=resamples)
        gaps[strategy] = comparisons[0]
    return Ceiling(estimate=estimate, candidates=scored_candidates / prompts, gaps=gaps)


def _plain_estimate(values: Sequence[float | None], resamples: int) -> Estimate:
    return bootstrap({"x": values}, resamples=resamples)[0]["x"]


def analyse(
    records: Sequence[Mapping[str, Any]],
    judgments: Iterable[Mapping[str, Any]],
    *,
    resamples: int = 2000,
    baseline: str = "single",
    failed_rows: int = 0,
) -> EvalAnalysis:
    """Every task's results from the generation records and their judgments."""
    scores = _Scores(judgments)
    strategies: list[str] = []
    for r in records:
        for s in r.get("strategies") or {}:
            if s not in strategies:
                strategies.append(s)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        ih = str(r["input_hash"])
        metric = _metric_of(scores.kinds.get(ih, set()), scores.opponents.get(ih, set()))
        task = str((r.get("row") or {}).get("task") or "default")
        groups[(task, metric)].append(r)
    names = _model_names(records)
    tasks = [
        _task_result(task, metric, rows, strategies, scores, resamples, names, baseline)
        for (task, metric), rows in sorted(groups.items())
    ]
    return EvalAnalysis(
        tasks=tasks, judge=scores.judge, prompts=len(records), failed_rows=failed_rows
    )
