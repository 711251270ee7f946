"""Replaying a live eval's own candidates: more strategies later (MoA too) on the very same pool,
without sampling it again, with its prompts and costs as recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from eval_helpers import TEACHERS, make_responder, presets_file, read_jsonl, sum_rows, write_jsonl

from polyfuse.eval import EvalConfigError, EvalDataError, aevaluate, read_eval_generations
from polyfuse.testing import FakeOpenAIServer

SYSTEM = "You are terse."


def _teacher_calls(fake: FakeOpenAIServer) -> int:
    return sum(1 for r in fake.requests if r.get("model") in TEACHERS)


def _rows(count: int) -> list[dict[str, object]]:
    rows = sum_rows(count)
    for row in rows:
        row["prompt"] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": row["prompt"]},
        ]
    return rows


async def test_a_live_evals_candidates_are_replayed_for_more_strategies_moa_included(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder())
    config = presets_file(tmp_path / "p.toml", fake_url)
    data = write_jsonl(tmp_path / "sums.jsonl", _rows(4))
    live = await aevaluate(
        data, tmp_path / "live", strategies="single,vote", config=config, preset="panel",
        fsync=False,
    )  # fmt: skip
    assert _teacher_calls(fake) == 4 * 3
    fake.requests.clear()

    replayed = await aevaluate(
        tmp_path / "live",  # the output directory names its generations.jsonl
        tmp_path / "more",
        replay=True,
        strategies="single,vote,fuse,moa",
        config=config,
        preset="panel",
        fsync=False,
    )
    # No candidate was sampled again: the teachers were asked only for MoA's second layer
    # (one proposer call per pool member), with the recorded drafts in the prompt.
    assert _teacher_calls(fake) == 4 * 3
    layer_two = [r for r in fake.requests if r.get("model") in TEACHERS]
    assert all("alpha: " in json.dumps(r["messages"]) for r in layer_two)
    # Every model call of the replay kept the row's own system message.
    assert all(SYSTEM in json.dumps(r["messages"]) for r in fake.requests)
    live_records = {r["input_hash"]: r for r in read_jsonl(tmp_path / "live" / "generations.jsonl")}
    for record in read_jsonl(tmp_path / "more" / "generations.jsonl"):
        texts = [c["text"] for c in record["candidates"]]
        assert texts == [c["text"] for c in live_records[record["input_hash"]]["candidates"]]
    before, after = live.analysis.tasks[0], replayed.analysis.tasks[0]
    assert after.estimates["vote"].mean == before.estimates["vote"].mean == 1.0
    assert after.estimates["fuse"].mean == after.estimates["moa"].mean == 1.0
    # The pool's recorded usage is counted as the live eval counted it.
    assert after.costs["vote"].tokens == before.costs["vote"].tokens
    assert after.costs["moa"].calls == 3 + 3 + 1
    assert {m: e.mean for m, e in after.models.items()} == {"alpha": 1.0, "beta": 1.0, "gamma": 0.0}


async def test_records_without_messages_replay_their_question(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder())
    config = presets_file(tmp_path / "p.toml", fake_url)
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(2))
    await aevaluate(data, tmp_path / "live", strategies="single", config=config, preset="panel")
    generations = tmp_path / "live" / "generations.jsonl"
    old = [{k: v for k, v in r.items() if k != "messages"} for r in read_jsonl(generations)]
    older = write_jsonl(tmp_path / "older.jsonl", old)
    entries = read_eval_generations(older)
    assert [e.row["prompt"] for e in entries] == ["What is 0+3?", "What is 1+4?"]
    assert entries[0].row["gold"] == "3" and [c.model for c in entries[0].candidates] == [
        "alpha",
        "beta",
        "gamma",
    ]
    result = await aevaluate(older, tmp_path / "again", replay=True, strategies="single,vote")
    assert result.analysis.tasks[0].estimates["vote"].mean == 1.0


async def test_replaying_an_eval_output_is_checked(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder())
    config = presets_file(tmp_path / "p.toml", fake_url)
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(2))
    live = tmp_path / "live"
    await aevaluate(data, live, strategies="single", config=config, preset="panel", fsync=False)
    with pytest.raises(EvalConfigError, match="this eval's own output"):
        await aevaluate(live, live, replay=True, strategies="single,vote")
    with pytest.raises(EvalConfigError, match="need models"):
        await aevaluate(live, tmp_path / "b", replay=True, strategies="single,moa")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalDataError, match="holds no generations.jsonl"):
        await aevaluate(empty, tmp_path / "c", replay=True, strategies="single")
    pools = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "x", "candidates": []}])
    with pytest.raises(EvalDataError, match="not a polyfuse eval generation record"):
        await aevaluate(pools, tmp_path / "d", replay=True, pools_format="eval")
