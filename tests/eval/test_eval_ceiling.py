"""The pool's ceiling in an eval's results: per prompt its best candidate (the oracle, pass@k),
each strategy's paired gap to it, and per-model quality over every sample of a model."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from eval_helpers import read_jsonl, write_jsonl

from polyfuse.eval import aevaluate

PROMPTS = 30


def _right(i: int, k: int) -> bool:
    """Sample k of prompt i is right on a fixed, sample-dependent pattern."""
    return (i + k) % (k + 2) == 0


def _pools(path: Path, models: tuple[str, ...]) -> Path:
    rows: list[dict[str, Any]] = []
    for i in range(PROMPTS):
        gold = 2 * i + 1
        candidates = [
            {"model": model, "text": f"The answer is {gold if _right(i, k) else gold + 7}."}
            for k, model in enumerate(models)
        ]
        rows.append({"id": f"p{i}", "prompt": f"Q{i}", "gold": str(gold), "candidates": candidates})
    return write_jsonl(path, rows)


async def test_the_ceiling_is_some_candidate_right_and_each_strategy_has_its_gap(
    tmp_path: Path,
) -> None:
    source = _pools(tmp_path / "pools.jsonl", ("a", "b", "c"))
    out = tmp_path / "out"
    result = await aevaluate(
        source, out, replay=True, strategies="single,vote", fsync=False, resamples=200
    )
    task = result.analysis.tasks[0]
    oracle = [any(_right(i, k) for k in range(3)) for i in range(PROMPTS)]
    ceiling = task.ceiling
    assert ceiling is not None
    assert ceiling.estimate.mean == sum(oracle) / PROMPTS
    assert ceiling.estimate.n == PROMPTS and ceiling.candidates == 3.0
    assert ceiling.estimate.low <= ceiling.estimate.mean <= ceiling.estimate.high
    for strategy in ("single", "vote"):
        gap = ceiling.gaps[strategy]
        # Paired on the same prompts: exactly the strategy's mean minus the oracle's.
        expected = task.estimates[strategy].mean - ceiling.estimate.mean
        assert abs(gap.diff.mean - expected) < 1e-12
        assert gap.diff.high <= 0  # no selection beats "some candidate is right"
    assert ceiling.gaps["single"].significant  # single misses prompts that b or c got
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    reported = summary["tasks"][0]["ceiling"]
    assert reported["mean"] == ceiling.estimate.mean and reported["candidates"] == 3.0
    assert reported["gaps"]["vote"]["diff"]["mean"] == ceiling.gaps["vote"].diff.mean
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"Ceiling: some candidate right on {100 * ceiling.estimate.mean:.1f}% of prompts" in md
    single_share = round(100 * task.estimates["single"].mean / ceiling.estimate.mean)
    assert f"| {single_share}% | {PROMPTS} |" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "gap to ceiling (pts)" in html
    plots = [
        base64.b64decode(uri).decode("utf-8")
        for uri in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)
    ]
    assert sum('id="ceiling"' in svg for svg in plots) == 1  # drawn on quality vs tokens


async def test_a_model_sampled_several_times_is_scored_by_the_mean_of_its_samples(
    tmp_path: Path,
) -> None:
    source = _pools(tmp_path / "pools.jsonl", ("m", "m", "m", "n"))
    result = await aevaluate(
        source, tmp_path / "out", replay=True, strategies="single,vote", fsync=False
    )
    task = result.analysis.tasks[0]
    per_prompt = [sum(_right(i, k) for k in range(3)) / 3 for i in range(PROMPTS)]
    assert abs(task.models["m"].mean - sum(per_prompt) / PROMPTS) < 1e-12
    assert task.models["n"].mean == sum(_right(i, 3) for i in range(PROMPTS)) / PROMPTS
    assert task.ceiling is not None and task.ceiling.candidates == 4.0
    # The routing log still holds every sample.
    assert len(read_jsonl(tmp_path / "out" / "routing.jsonl")) == PROMPTS * 4
