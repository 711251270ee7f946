"""Replay adaptive sampling on saved GSM8K answers: accuracy vs candidate calls.

Reads a ZeroEval-style pool (one JSON row per model and question: ``id``, ``model``,
``extracted_answer``, ``correct``), keeps the questions every model answered, ranks the models
by accuracy and builds two 8-model panels (the weakest and the strongest). For each panel and
each of ``--orders`` random sampling orders (a fresh permutation of the panel per question), it
compares the full 8-model majority vote with adaptive stopping — polyfuse's own rule,
:func:`polyfuse.adaptive.beta_stop`: one answer at a time, stop once at least ``--first`` are in
and ``P(majority) >= confidence``, or once the answers left could not overturn the leader — for
several confidence thresholds, and the naive rule "stop once every answer so far agrees, after
at least 2" for reference. Votes use :func:`polyfuse.aggregators.vote.default_normalise`
and :class:`~polyfuse.MajorityVote`'s tie rule (the answer seen first wins).

Run::

    python benchmarks/adaptive_replay.py \\
        /work/shared/data/pools/zeroeval-gsm8k/gsm_responses_12models.jsonl.gz \\
        --plot docs/adaptive_replay.png

The data is read in place (never copied); the plot needs ``matplotlib`` (``polyfuse[eval]``).

``--folds K`` validates the defaults out of sample: the questions are split into K random folds;
for each fold, a setting of ``first`` and ``confidence`` is chosen on the other folds (the rule
of :func:`tune`: the most calls saved on both panels with accuracy at most ``--tune-margin``
points below the full vote on each) and reported on the held-out fold, with the shipped
defaults next to it, and paired bootstrap 95% CIs over the held-out questions (``numpy``)::

    python benchmarks/adaptive_replay.py \\
        /work/shared/data/pools/zeroeval-gsm8k/gsm_responses_12models.jsonl.gz --folds 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from polyfuse.adaptive import AdaptiveSampling, beta_stop, majority_score
from polyfuse.aggregators.vote import default_normalise

Answer = tuple[str | None, bool]
"""A model's normalised answer to one question and whether it was graded correct."""

StopRule = Callable[[Counter[str], int, int], bool]
"""``(answer counts so far, answers drawn, answers left) -> stop?``"""


@dataclass(frozen=True)
class Outcome:
    """A policy's accuracy and mean candidate calls on one panel, over every order."""

    policy: str
    accuracy: float
    accuracy_sd: float
    calls: float


def load_pool(path: Path) -> dict[str, dict[str, Answer]]:
    """``{model: {question id: (normalised answer, correct)}}`` from a ``.jsonl[.gz]`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    pool: dict[str, dict[str, Answer]] = defaultdict(dict)
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            raw = row.get("extracted_answer")
            key = default_normalise(str(raw)) if raw not in (None, "") else None
            pool[row["model"]][row["id"]] = (key or None, bool(row.get("correct")))
    return dict(pool)


def common_questions(pool: dict[str, dict[str, Answer]]) -> list[str]:
    """The questions every model answered, sorted."""
    sets = [set(answers) for answers in pool.values()]
    return sorted(set.intersection(*sets))


def panels(
    pool: dict[str, dict[str, Answer]], questions: list[str], size: int
) -> dict[str, list[str]]:
    """The ``size`` weakest and ``size`` strongest models by accuracy on ``questions``."""
    accuracy = {
        model: statistics.fmean(answers[q][1] for q in questions) for model, answers in pool.items()
    }
    ranked = sorted(accuracy, key=lambda m: accuracy[m])
    return {"weakest": ranked[:size], "strongest": ranked[-size:]}


def vote(answers: Sequence[Answer]) -> bool:
    """Whether the majority answer (ties: seen first) is correct; no answer counts as wrong."""
    counts: Counter[str] = Counter()
    graded: dict[str, bool] = {}
    for key, correct in answers:
        if key is not None:
            counts[key] += 1
            graded.setdefault(key, correct)
    scored = majority_score(counts)
    return scored is not None and graded[scored[0]]


def beta_rule(settings: AdaptiveSampling) -> StopRule:
    """polyfuse's Beta rule with ``settings`` (``first`` and ``confidence``)."""

    def stop(counts: Counter[str], drawn: int, left: int) -> bool:
        return beta_stop(counts, drawn, left, settings)[0] is not None

    return stop


def unanimous_rule(counts: Counter[str], drawn: int, left: int) -> bool:
    """The naive rule: every answer so far agrees, after at least 2."""
    return drawn >= 2 and len(counts) == 1 and sum(counts.values()) == drawn


def replay(answers: Sequence[Answer], stop: StopRule | None) -> tuple[bool, int]:
    """Draw ``answers`` in order until ``stop`` (``None``: all); (correct, calls)."""
    counts: Counter[str] = Counter()
    for drawn, (key, _) in enumerate(answers, start=1):
        if key is not None:
            counts[key] += 1
        if stop is not None and stop(counts, drawn, len(answers) - drawn):
            return vote(answers[:drawn]), drawn
    return vote(answers), len(answers)


def evaluate(
    pool: dict[str, dict[str, Answer]],
    questions: list[str],
    models: list[str],
    rules: dict[str, StopRule | None],
    orders: int,
    seed: int,
) -> list[Outcome]:
    """Every rule on ``models``, averaged over ``orders`` random sampling orders."""
    per_order: dict[str, list[tuple[float, float]]] = {name: [] for name in rules}
    rng = random.Random(seed)
    for _ in range(orders):
        shuffled = {q: rng.sample(models, len(models)) for q in questions}
        for name, rule in rules.items():
            correct = calls = 0
            for q in questions:
                ok, used = replay([pool[m][q] for m in shuffled[q]], rule)
                correct += ok
                calls += used
            per_order[name].append((correct / len(questions), calls / len(questions)))
    outcomes: list[Outcome] = []
    for name, runs in per_order.items():
        accuracies = [a for a, _ in runs]
        outcomes.append(
            Outcome(
                policy=name,
                accuracy=statistics.fmean(accuracies),
                accuracy_sd=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                calls=statistics.fmean(c for _, c in runs),
            )
        )
    return outcomes


def table(results: dict[str, list[Outcome]], size: int) -> str:
    """A Markdown table: accuracy, calls and savings against the full vote, per panel."""
    lines = [
        "| panel | policy | accuracy (± sd over orders) | Δ vs full vote (pt) | calls | fewer calls |",
        "|---|---|---|---|---|---|",
    ]
    for panel, outcomes in results.items():
        full = next(o for o in outcomes if o.policy == "full vote")
        for o in outcomes:
            lines.append(
                f"| {panel} | {o.policy} | {o.accuracy:.4f} ± {o.accuracy_sd:.4f} | "
                f"{100 * (o.accuracy - full.accuracy):+.2f} | {o.calls:.2f} of {size} | "
                f"{100 * (1 - o.calls / full.calls):.1f}% |"
            )
    return "\n".join(lines)


def plot(results: dict[str, list[Outcome]], path: Path) -> None:
    """Accuracy against mean candidate calls, one line of Beta thresholds per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (panel, outcomes) in zip(axes[0], results.items(), strict=False):
        beta = [o for o in outcomes if o.policy.startswith("beta")]
        ax.plot([o.calls for o in beta], [o.accuracy for o in beta], "o-", label="Beta rule")
        for o in beta:
            ax.annotate(o.policy.removeprefix("beta "), (o.calls, o.accuracy), fontsize=7)
        for o in outcomes:
            if o.policy == "full vote":
                ax.axhline(o.accuracy, color="gray", linestyle="--", label="full 8-model vote")
            elif o.policy == "unanimous":
                ax.plot([o.calls], [o.accuracy], "s", label="unanimous after 2")
        ax.set_title(f"{panel} 8 models")
        ax.set_xlabel("candidate calls per question")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


@dataclass(frozen=True)
class PerQuestion:
    """One rule on one panel: per question, the share of orders it got right and its mean
    calls (averaged over the orders)."""

    correct: list[float]
    calls: list[float]


def per_question(
    pool: dict[str, dict[str, Answer]],
    questions: list[str],
    models: list[str],
    rules: dict[str, StopRule | None],
    orders: int,
    seed: int,
) -> dict[str, PerQuestion]:
    """Every rule on ``models``: per-question accuracy and calls, averaged over ``orders``
    random sampling orders (the same orders for every rule)."""
    rng = random.Random(seed)
    shuffles = [{q: rng.sample(models, len(models)) for q in questions} for _ in range(orders)]
    out: dict[str, PerQuestion] = {}
    for name, rule in rules.items():
        correct = [0.0] * len(questions)
        calls = [0.0] * len(questions)
        for shuffled in shuffles:
            for i, q in enumerate(questions):
                ok, used = replay([pool[m][q] for m in shuffled[q]], rule)
                correct[i] += ok / orders
                calls[i] += used / orders
        out[name] = PerQuestion(correct, calls)
    return out


@dataclass(frozen=True)
class HeldOut:
    """A setting's numbers on held-out questions, against the full vote, with 95% CIs."""

    accuracy: float
    full_accuracy: float
    delta: tuple[float, float, float]
    """Accuracy minus the full vote's, in points: (mean, low, high)."""
    calls: float
    saved: tuple[float, float, float]
    """Fewer candidate calls than the full vote, in %: (mean, low, high)."""


def held_out(
    rule: PerQuestion, full: PerQuestion, rows: list[int], resamples: int, seed: int
) -> HeldOut:
    """``rule`` against ``full`` on the questions ``rows``; paired bootstrap over questions."""
    import numpy as np

    acc = np.array([rule.correct[i] for i in rows])
    base = np.array([full.correct[i] for i in rows])
    calls = np.array([rule.calls[i] for i in rows])
    base_calls = np.array([full.calls[i] for i in rows])
    draws = np.random.default_rng(seed).integers(0, len(rows), size=(resamples, len(rows)))
    deltas = 100 * (acc[draws].mean(axis=1) - base[draws].mean(axis=1))
    saved = 100 * (1 - calls[draws].mean(axis=1) / base_calls[draws].mean(axis=1))
    return HeldOut(
        accuracy=float(acc.mean()),
        full_accuracy=float(base.mean()),
        delta=(
            float(100 * (acc.mean() - base.mean())),
            float(np.quantile(deltas, 0.025)),
            float(np.quantile(deltas, 0.975)),
        ),
        calls=float(calls.mean()),
        saved=(
            float(100 * (1 - calls.mean() / base_calls.mean())),
            float(np.quantile(saved, 0.025)),
            float(np.quantile(saved, 0.975)),
        ),
    )


def tune(
    results: dict[str, dict[str, PerQuestion]],
    settings: dict[str, AdaptiveSampling],
    rows: list[int],
    margin: float,
) -> str:
    """The setting with the most calls saved (mean over panels) whose accuracy is at most
    ``margin`` points below the full vote on every panel, on the questions ``rows``; ties go to
    the stricter (higher) confidence. Falls back to the strictest setting."""

    def mean(values: list[float]) -> float:
        return sum(values[i] for i in rows) / len(rows)

    best: tuple[float, float, str] | None = None
    for name, setting in settings.items():
        drops = [
            100 * (mean(panel["full vote"].correct) - mean(panel[name].correct))
            for panel in results.values()
        ]
        if max(drops) > margin:
            continue
        saved = statistics.fmean(
            1 - mean(panel[name].calls) / mean(panel["full vote"].calls)
            for panel in results.values()
        )
        key = (saved, setting.confidence, name)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return max(settings, key=lambda n: (settings[n].confidence, settings[n].first))
    return best[2]


def folds_report(
    pool: dict[str, dict[str, Answer]],
    questions: list[str],
    groups: dict[str, list[str]],
    args: argparse.Namespace,
) -> str:
    """Tune on K-1 folds, report on the held-out one, for every fold (see the module doc)."""
    default = AdaptiveSampling()
    grid = {
        f"first={f} confidence={c:g}": AdaptiveSampling(first=f, confidence=c)
        for f in (2, 3, 4)
        for c in (0.6, 0.7, 0.8, 0.9, 0.95)
    }
    default_name = f"first={default.first} confidence={default.confidence:g}"
    rules: dict[str, StopRule | None] = {"full vote": None}
    rules.update({name: beta_rule(setting) for name, setting in grid.items()})
    results = {
        panel: per_question(pool, questions, models, rules, args.orders, args.seed)
        for panel, models in groups.items()
    }
    order = list(range(len(questions)))
    random.Random(args.seed).shuffle(order)
    folds = [sorted(order[k :: args.folds]) for k in range(args.folds)]
    lines = [
        "| held-out fold | setting (chosen on the other folds) | panel | full vote | adaptive "
        f"| Δ pt (95% CI) | calls of {args.panel} | fewer calls % (95% CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, test in enumerate(folds):
        tune_rows = [i for j, fold in enumerate(folds) if j != k for i in fold]
        chosen = tune(results, grid, tune_rows, args.tune_margin)
        shown = [(chosen, "tuned: ")]
        if chosen != default_name:
            shown.append((default_name, "default: "))
        for name, label in shown:
            for panel, by_rule in results.items():
                h = held_out(by_rule[name], by_rule["full vote"], test, 2000, args.seed + k)
                lines.append(
                    f"| {k + 1} of {args.folds} ({len(test)} q) | {label}{name} | {panel} | "
                    f"{h.full_accuracy:.4f} | {h.accuracy:.4f} | "
                    f"{h.delta[0]:+.2f} ({h.delta[1]:+.2f} to {h.delta[2]:+.2f}) | "
                    f"{h.calls:.2f} | {h.saved[0]:.1f} ({h.saved[1]:.1f} to {h.saved[2]:.1f}) |"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("pool", type=Path, help="gsm_responses_12models.jsonl.gz")
    parser.add_argument("--orders", type=int, default=20, help="random sampling orders")
    parser.add_argument("--panel", type=int, default=8, help="models per panel")
    parser.add_argument("--seed", type=int, default=0)
    default = AdaptiveSampling()
    parser.add_argument(
        "--first", type=int, default=default.first, help="the fewest answers before stopping"
    )
    parser.add_argument(
        "--confidence",
        type=float,
        nargs="+",
        default=sorted({0.7, default.confidence, 0.9, 0.95, 0.99}),
        help="Beta thresholds to replay",
    )
    parser.add_argument("--plot", type=Path, help="write the accuracy-vs-calls plot here")
    parser.add_argument(
        "--folds", type=int, default=0, help="validate out of sample on K folds (K >= 2)"
    )
    parser.add_argument(
        "--tune-margin",
        type=float,
        default=0.25,
        help="folds: the most accuracy (points) a tuned setting may lose on a tuning fold",
    )
    args = parser.parse_args(argv)
    pool = load_pool(args.pool)
    questions = common_questions(pool)
    if args.folds:
        if args.folds < 2:
            parser.error("--folds needs at least 2 folds")
        groups = panels(pool, questions, args.panel)
        for panel, models in groups.items():
            print(f"{panel}: {', '.join(models)}")
        print(f"{len(questions)} questions, {args.orders} orders, {args.folds} folds\n")
        print(folds_report(pool, questions, groups, args))
        return
    rules: dict[str, StopRule | None] = {"full vote": None, "unanimous": unanimous_rule}
    rules.update(
        {
            f"beta {c:g}": beta_rule(AdaptiveSampling(first=args.first, confidence=c))
            for c in args.confidence
        }
    )
    results: dict[str, list[Outcome]] = {}
    for panel, models in panels(pool, questions, args.panel).items():
        print(f"{panel}: {', '.join(models)}")
        results[panel] = evaluate(pool, questions, models, rules, args.orders, args.seed)
    print(f"{len(questions)} questions, {args.orders} orders, first={args.first}\n")
    print(table(results, args.panel))
    if args.plot is not None:
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
