"""The quality study's tables, from its `polyfuse eval` output directories.

Usage::

    python benchmarks/quality/study_tables.py --study OUT --greedy OUT_T0 [--replay OUT_MOA ...]

``--study`` is the eval of the 5-candidate pool (single, best-of-n, vote, usc, fuse ...);
``--greedy`` the eval of one greedy answer per prompt (preset ``greedy``, strategy ``single``);
each ``--replay`` an eval that replayed the study's own candidates for more strategies (MoA).
The evals are joined on the row id: every table below uses only the prompts
that every strategy in it answered, so differences are paired. Prints markdown:

* per strategy: accuracy with its bootstrap 95% CI, tokens and calls per prompt (the pool's
  tokens included), and the paired difference to majority vote and to the greedy answer;
* the ceiling: "some of the 5 candidates is right" (pass@5), and each strategy's share of it;
* how the aggregators behaved on the prompts where the candidates disagreed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyfuse.eval import bootstrap
from polyfuse.eval.analysis import read_generations, signed_points

T0 = "single T=0"


def _judgments(out: Path) -> list[dict[str, Any]]:
    path = out / "judgments.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _grades(out: Path) -> dict[tuple[str, str], float]:
    """(input hash, subject) → grade, for strategies and candidates."""
    grades: dict[tuple[str, str], float] = {}
    for j in _judgments(out):
        if j.get("kind") == "grade":
            grades[(str(j["input_hash"]), str(j["subject"]))] = float(j.get("score") or 0.0)
    return grades


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {str(r["input_hash"]): r for r in read_generations(out / "generations.jsonl")}


def _tokens(entry: Mapping[str, Any]) -> int:
    return int(entry.get("prompt_tokens") or 0) + int(entry.get("completion_tokens") or 0)


class Study:
    """Per prompt and strategy: the grade, tokens and calls, joined across the evals."""

    def __init__(self, study: Path, greedy: Path | None, replays: Sequence[Path]) -> None:
        self.grade: dict[str, dict[str, float]] = {}
        self.tokens: dict[str, dict[str, int]] = {}
        self.calls: dict[str, dict[str, int]] = {}
        self.candidates: dict[str, list[float]] = {}
        self.answers: dict[str, dict[str, str]] = {}
        self.order: list[str] = []
        self._add(study, rename={}, candidates=True)
        known = set(self.order)
        for out in replays:  # only what the study did not have (a replay's vote is the same)
            self._add(out, rename={}, candidates=False, skip=known)
        if greedy is not None:
            self._add(greedy, rename={"single": T0}, candidates=False)

    def _add(
        self,
        out: Path,
        *,
        rename: Mapping[str, str],
        candidates: bool,
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        grades = _grades(out)
        for ih, record in _records(out).items():
            key = str((record.get("row") or {}).get("id") or ih)  # the same question in each eval
            for name, entry in (record.get("strategies") or {}).items():
                shown = rename.get(name, name)
                grade = grades.get((ih, name))
                if grade is None or name in skip:
                    continue
                if shown not in self.order:
                    self.order.append(shown)
                self.grade.setdefault(shown, {})[key] = grade
                self.tokens.setdefault(shown, {})[key] = _tokens(entry)
                self.calls.setdefault(shown, {})[key] = int(entry.get("calls") or 0)
            if candidates:
                self.candidates[key] = [
                    grades[(ih, f"candidate:{c['index']}")]
                    for c in record.get("candidates") or []
                    if (ih, f"candidate:{c['index']}") in grades
                ]

    def prompts(self, strategies: Sequence[str]) -> list[str]:
        """The prompts every one of ``strategies`` answered (and whose pool was graded)."""
        common = set(self.candidates)
        for s in strategies:
            common &= set(self.grade.get(s, {}))
        return sorted(common)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def strategy_table(study: Study, strategies: Sequence[str], resamples: int) -> str:
    prompts = study.prompts(strategies)
    scores: dict[str, list[float | None]] = {
        s: [study.grade[s][ih] for ih in prompts] for s in strategies
    }
    ceiling = [max(study.candidates[ih]) if study.candidates[ih] else None for ih in prompts]
    mean_sample = [
        sum(study.candidates[ih]) / len(study.candidates[ih]) if study.candidates[ih] else None
        for ih in prompts
    ]
    all_scores: dict[str, list[float | None]] = {
        **scores,
        "oracle (pass@5)": ceiling,
        "mean of the 5 samples": mean_sample,
    }
    estimates, comparisons = bootstrap(all_scores, resamples=resamples)
    diffs = {(c.a, c.b): c for c in comparisons}

    def diff(a: str, b: str) -> str:
        if a == b or b not in estimates:
            return "–"
        c = diffs.get((a, b))
        sign = 1.0
        if c is None:
            c, sign = diffs[(b, a)], -1.0
        low, high = sorted((sign * c.diff.low, sign * c.diff.high))
        star = " *" if (low > 0 or high < 0) else ""
        return f"{signed_points(sign * c.diff.mean)} [{signed_points(low)}, {signed_points(high)}]{star}"

    lines = [
        f"{len(prompts)} prompts, the same 5 candidates for every strategy; 95% bootstrap CIs "
        f"({resamples} resamples), paired differences in points (* = the CI excludes 0).",
        "",
        "| strategy | accuracy % | 95% CI | vs vote (pts) | vs single T=0 (pts) | "
        "tokens / prompt | calls / prompt | of the oracle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    oracle = estimates["oracle (pass@5)"].mean
    for s in [*strategies, "mean of the 5 samples", "oracle (pass@5)"]:
        e = estimates[s]
        tokens = sum(study.tokens[s][ih] for ih in prompts) / len(prompts) if s in scores else None
        calls = sum(study.calls[s][ih] for ih in prompts) / len(prompts) if s in scores else None
        lines.append(
            f"| {s} | {_pct(e.mean)} | {_pct(e.low)} – {_pct(e.high)} | {diff(s, 'vote')} | "
            f"{diff(s, T0) if T0 in scores else '–'} | "
            f"{'–' if tokens is None else f'{tokens:,.0f}'} | "
            f"{'–' if calls is None else f'{calls:.1f}'} | "
            f"{'–' if not oracle else f'{100 * e.mean / oracle:.0f}%'} |"
        )
    return "\n".join(lines)


def disagreement_table(study: Study, strategies: Sequence[str]) -> str:
    """On prompts whose 5 candidates were neither all right nor all wrong: who got them."""
    prompts = study.prompts(strategies)
    split = [ih for ih in prompts if 0 < sum(study.candidates[ih]) < len(study.candidates[ih])]
    minority = [ih for ih in split if sum(study.candidates[ih]) * 2 < len(study.candidates[ih])]
    lines = [
        f"Of {len(prompts)} prompts, the 5 candidates were all right on "
        f"{sum(1 for ih in prompts if study.candidates[ih] and min(study.candidates[ih]) == 1)}, "
        f"all wrong on {sum(1 for ih in prompts if not any(study.candidates[ih]))}, and split on "
        f"{len(split)} ({len(minority)} of them with the right answer in the minority).",
        "",
        "| strategy | right on the split prompts | right where the right answer was a minority |",
        "|---|---|---|",
    ]
    for s in strategies:
        right = sum(study.grade[s][ih] for ih in split)
        right_minority = sum(study.grade[s][ih] for ih in minority)
        lines.append(
            f"| {s} | {right:.0f} of {len(split)} | {right_minority:.0f} of {len(minority)} |"
        )
    return "\n".join(lines)


def plot(study: Study, strategies: Sequence[str], path: Path, title: str) -> None:
    """Accuracy (95% CI) against tokens per prompt, with the pass@5 ceiling as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prompts = study.prompts(strategies)
    scores: dict[str, list[float | None]] = {
        s: [study.grade[s][ih] for ih in prompts] for s in strategies
    }
    scores["oracle"] = [max(study.candidates[ih]) for ih in prompts]
    estimates, _ = bootstrap(scores, resamples=2000)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, s in enumerate(strategies):
        e = estimates[s]
        tokens = sum(study.tokens[s][ih] for ih in prompts) / len(prompts)
        y = 100 * e.mean
        ax.errorbar(
            [tokens], [y], yerr=[[y - 100 * e.low], [100 * e.high - y]], fmt="o", capsize=4,
            color="#4c78a8",
        )  # fmt: skip
        offset = (6, 4) if i % 2 == 0 else (6, -11)  # neighbours at similar cost stay legible
        ax.annotate(s, (tokens, y), textcoords="offset points", xytext=offset, fontsize=8)
    top = estimates["oracle"]
    ax.axhspan(100 * top.low, 100 * top.high, color="#54a24b", alpha=0.12, lw=0)
    ax.axhline(100 * top.mean, color="#54a24b", ls=":", lw=1, label="oracle: some candidate right")
    ax.set_xscale("log")
    ax.set_xlabel("tokens per question (the 5 candidates included), log scale")
    ax.set_ylabel("accuracy (%), 95% CI")
    ax.set_title(f"{title} ({len(prompts)} questions)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--greedy", type=Path)
    parser.add_argument("--replay", type=Path, action="append", default=[])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the joined grades here")
    parser.add_argument("--plot", type=Path, help="also draw accuracy vs tokens here (PNG)")
    parser.add_argument("--title", default="GSM8K, Qwen2.5-Coder-1.5B-Instruct")
    args = parser.parse_args()
    study = Study(args.study, args.greedy, args.replay)
    base = [s for s in study.order if s in ("single", "best-of-n", "vote", "usc", "fuse")]
    first = ([T0] if T0 in study.grade else []) + base
    print(strategy_table(study, first, args.resamples))
    print()
    print(disagreement_table(study, base))
    extra = [s for s in study.order if s not in first and s != T0]
    if extra:
        print()
        print(strategy_table(study, [*first, *extra], args.resamples))
        print()
        print(disagreement_table(study, [*base, *extra]))
    if args.plot:
        plot(study, [*first, *extra], args.plot, args.title)
    if args.json:
        args.json.write_text(
            json.dumps({"grades": study.grade, "candidates": study.candidates}), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
