"""Replay of recorded pools: per-model accuracy recounted, majority vote over a fixed panel
with its CI, the panel-size sweep, USC and Best-of-N without sampling."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from eval_helpers import make_responder, presets_file, read_jsonl

from polyfuse.eval import (
    EvalConfigError,
    EvalDataError,
    aevaluate,
    convert_zeroeval,
    grade_pool,
    panel_sweep,
    read_pools,
    read_zeroeval,
)
from polyfuse.testing import FakeOpenAIServer

MODELS = ("m-strong", "m-good", "m-fair", "m-weak", "m-bad")
EXTRA = tuple(f"m-extra{j}" for j in range(5))
PROMPTS = 40


def _right(i: int, k: int) -> bool:
    """Model k is right on prompt i for a fixed, model-dependent share of prompts."""
    return (i * (k + 1) + k) % 10 >= (k % 5) * 2


def _answer(i: int, k: int) -> str:
    gold = 3 * i + 1
    # Wrong answers split between two values (more often the same one for the extra models).
    value = gold if _right(i, k) else gold + 1 + (k % 2 if k < 5 else i % 2)
    return json.dumps({"reasoning": f"{i} times 3 plus 1", "answer": f"{value}"})


def zeroeval_file(path: Path, models: tuple[str, ...] = MODELS) -> Path:
    """ZeroEval's layout: one gzipped line per (question, model)."""
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for k, model in enumerate(models):
            for i in range(PROMPTS):
                line = {
                    "id": f"gsm-{i}",
                    "question": f"Question {i}: what is 3 x {i} + 1?",
                    "gold": str(3 * i + 1),
                    "model": model,
                    "generator": f"org/{model}",
                    "output": _answer(i, k),
                }
                handle.write(json.dumps(line) + "\n")
    return path


def _expected_vote(panel: list[int]) -> float:
    right = 0
    for i in range(PROMPTS):
        answers = [json.loads(_answer(i, k))["answer"] for k in panel]
        counts = Counter(answers)
        top = max(counts.values())
        winner = next(a for a in answers if counts[a] == top)  # ties: the earliest member
        right += winner == str(3 * i + 1)
    return right / PROMPTS


async def test_replay_recounts_each_model_and_votes_over_a_fixed_panel(tmp_path: Path) -> None:
    source = zeroeval_file(tmp_path / "gsm.jsonl.gz")
    panel = ["m-good", "m-fair", "m-weak"]
    result = await aevaluate(
        source,
        tmp_path / "out",
        replay=True,
        strategies="single,vote",
        panel=panel,
        sweep=True,
        fsync=False,
    )
    task = result.analysis.tasks[0]
    assert task.task == "gsm8k" and task.prompts == PROMPTS
    recount = {m: sum(_right(i, MODELS.index(m)) for i in range(PROMPTS)) / PROMPTS for m in panel}
    assert {m: e.mean for m, e in task.models.items()} == recount
    vote = task.estimates["vote"]
    assert vote.mean == _expected_vote([1, 2, 3])
    assert vote.low <= vote.mean <= vote.high and vote.n == PROMPTS
    assert task.estimates["single"].mean == recount["m-good"]  # single = the panel's first
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    reported = summary["tasks"][0]
    assert reported["strategies"]["vote"]["mean"] == vote.mean
    assert reported["models"]["m-fair"]["mean"] == recount["m-fair"]
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert f"| vote | {100 * vote.mean:.1f} | {100 * vote.low:.1f} – {100 * vote.high:.1f} |" in md
    # The sweep follows the panel's order: size k = its first k models.
    assert [r.size for r in result.sweep or []] == [1, 2, 3]
    assert result.sweep is not None and result.sweep[2].vote.mean == vote.mean
    assert result.sweep[0].vote.mean == recount["m-good"]
    # The routing log has every (prompt, model) with its grade.
    routed = read_jsonl(tmp_path / "out" / "routing.jsonl")
    assert len(routed) == PROMPTS * 3
    assert sum(r["score"] for r in routed if r["model"] == "m-weak") == recount["m-weak"] * PROMPTS


async def test_vote_over_a_fixed_8_model_panel_of_10(tmp_path: Path) -> None:
    models = MODELS + EXTRA
    source = zeroeval_file(tmp_path / "gsm.jsonl.gz", models)
    panel = [models[k] for k in (3, 0, 9, 6, 1, 8, 4, 2)]
    result = await aevaluate(
        source, tmp_path / "out", replay=True, strategies="single,vote", panel=panel, fsync=False
    )
    task = result.analysis.tasks[0]
    assert set(task.models) == set(panel)
    for model in panel:
        k = models.index(model)
        assert task.models[model].mean == sum(_right(i, k) for i in range(PROMPTS)) / PROMPTS
    vote = task.estimates["vote"]
    assert vote.mean == _expected_vote([models.index(m) for m in panel])
    assert vote.low <= vote.mean <= vote.high and vote.n == PROMPTS
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    row = f" | {100 * vote.mean:.1f} | {100 * vote.low:.1f} – {100 * vote.high:.1f} | 40 |"
    assert f"| vote{row}" in md or f"| vote ★{row}" in md
    assert vote.mean > task.estimates["single"].mean
    assert task.costs["vote"].calls == 8 and task.cost_unit == "calls"


async def test_sweep_over_every_panel_size_strongest_first(tmp_path: Path) -> None:
    entries = read_zeroeval(zeroeval_file(tmp_path / "gsm.jsonl.gz"))
    graded = await grade_pool(entries)
    ranked = graded.ranked()
    accuracy = {
        m: sum(_right(i, MODELS.index(m)) for i in range(PROMPTS)) / PROMPTS for m in MODELS
    }
    assert [graded.accuracy(m) for m in ranked] == sorted(accuracy.values(), reverse=True)
    results = panel_sweep(graded, resamples=500)
    assert [r.size for r in results] == [1, 2, 3, 4, 5]
    for r in results:
        assert r.vote.mean == _expected_vote([MODELS.index(m) for m in r.panel])
        assert r.oracle >= r.best_single >= r.vote.mean - 1  # sanity
    with pytest.raises(EvalConfigError, match="outside"):
        panel_sweep(graded, sizes=[9])


async def test_usc_and_best_of_n_replay_a_panel_without_sampling(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder())
    pools = tmp_path / "pools.jsonl"
    assert convert_zeroeval(zeroeval_file(tmp_path / "gsm.jsonl.gz"), pools) == PROMPTS
    assert len(read_pools(pools)) == PROMPTS
    result = await aevaluate(
        pools,
        tmp_path / "out",
        replay=True,
        strategies="single,vote,usc,best-of-n",
        panel=["m-strong", "m-weak", "m-bad"],
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        fsync=False,
    )
    models = {r.get("model") for r in fake.requests}
    assert models == {"fusor"}  # only the selector and the judge were called
    task = result.analysis.tasks[0]
    # The scripted selector always picks Response 3 = m-bad's answer.
    accuracy_bad = sum(_right(i, 4) for i in range(PROMPTS)) / PROMPTS
    assert task.estimates["usc"].mean == accuracy_bad
    # The judge scores every candidate 8: Best-of-N keeps the first (m-strong).
    assert task.estimates["best-of-n"].mean == task.estimates["single"].mean
    assert task.costs["usc"].calls == 4 and task.costs["best-of-n"].calls == 6


async def test_replay_errors_are_clear(tmp_path: Path) -> None:
    source = zeroeval_file(tmp_path / "gsm.jsonl.gz")
    with pytest.raises(EvalDataError, match="no answers from nobody"):
        await aevaluate(source, tmp_path / "a", replay=True, panel=["nobody"])
    with pytest.raises(EvalConfigError, match="need models"):  # MoA's later layers sample
        await aevaluate(source, tmp_path / "b", replay=True, strategies="single,moa")
    with pytest.raises(EvalConfigError, match="need models"):
        await aevaluate(source, tmp_path / "c", replay=True, strategies="single,fuse")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "no candidates here"}\n', encoding="utf-8")
    with pytest.raises(EvalDataError, match="no 'candidates' list"):
        await aevaluate(bad, tmp_path / "d", replay=True, pools_format="polyfuse")


async def test_rows_that_need_a_judge_without_one_are_flagged_not_scored(tmp_path: Path) -> None:
    pools = tmp_path / "open.jsonl"
    line = {
        "id": "o1",
        "prompt": "Write a haiku.",
        "reference": "An old silent pond",
        "candidates": [{"model": "a", "text": "Leaves fall"}, {"model": "b", "text": "Snow"}],
    }
    pools.write_text(json.dumps(line) + "\n", encoding="utf-8")
    result = await aevaluate(pools, tmp_path / "out", replay=True, fsync=False)
    assert result.notes and "no judge was configured" in result.notes[0]
    task = result.analysis.tasks[0]
    assert all(e.n == 0 for e in task.estimates.values())
    assert "nothing to recommend" in task.recommendation
    assert result.routing_records == 0 and result.routing_skipped == 2

    def strict(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}")

    text = (tmp_path / "out" / "summary.json").read_text(encoding="utf-8")
    summary = json.loads(text, parse_constant=strict)
    assert summary["tasks"][0]["strategies"]["vote"]["mean"] is None
