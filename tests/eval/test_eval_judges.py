"""The judge protocol on the fake server with scripted judgments: both position orders,
explicit ties, position bias reported, unparseable replies counted and never scored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eval_helpers import make_responder, presets_file, read_jsonl, sum_rows, write_jsonl

from polyfuse.eval import aevaluate, combine_orders, parse_pairwise, parse_rubric
from polyfuse.testing import FakeOpenAIServer


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A is clearly better. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both fine. [[TIE]]", "tie"),
        ("[[C]]", "tie"),
        ("[[ a ]]", "A"),
        ("I prefer A.", None),
        ("[[A]] ... on reflection [[B]]", None),
        ("", None),
    ],
)
def test_parse_pairwise(reply: str, verdict: str | None) -> None:
    assert parse_pairwise(reply) == verdict


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Rating: [[7]]", 7.0),
        ("[[9.5]]", 9.5),
        ("Rating: 7", None),
        ("[[11]]", None),
        ("[[3]] [[4]]", None),
    ],
)
def test_parse_rubric(reply: str, score: float | None) -> None:
    assert parse_rubric(reply) == score


def test_combining_both_orders() -> None:
    assert combine_orders("A", "B") == 1.0  # won in both positions
    assert combine_orders("B", "A") == 0.0
    assert combine_orders("A", "A") == 0.5  # position bias: one win, one loss
    assert combine_orders("tie", "tie") == 0.5
    assert combine_orders("A", "tie") == 0.75
    assert combine_orders("A", None) == 1.0  # the parseable order decides
    assert combine_orders(None, None) is None  # no verdict, not a tie


def _reference_rows(tmp_path: Path, count: int = 4) -> Path:
    rows = sum_rows(count, gold=False)
    for row in rows:
        row["reference"] = "REFERENCE answer."
    return write_jsonl(tmp_path / "open.jsonl", rows)


async def _run(tmp_path: Path, url: str, **options: object):  # type: ignore[no-untyped-def]
    return await aevaluate(
        _reference_rows(tmp_path),
        tmp_path / "out",
        strategies="single,fuse",
        config=presets_file(tmp_path / "p.toml", url),
        preset="panel",
        fsync=False,
        judge_candidates=False,
        **options,  # type: ignore[arg-type]
    )


async def test_pairwise_against_the_reference_in_both_orders(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    # A consistent judge: the fused answer beats the reference, the single answer ties it.
    def judge(a: str, b: str) -> str:
        if "Fused" in a:
            return "[[A]]"
        if "Fused" in b:
            return "[[B]]"
        return "[[TIE]]"

    fake = make_fake(responder=make_responder(pairwise=judge))
    result = await _run(tmp_path, fake_url)
    task = result.analysis.tasks[0]
    assert task.metric == "win rate vs reference"
    assert task.estimates["fuse"].mean == 1.0 and task.estimates["single"].mean == 0.5
    judgments = [j for j in read_jsonl(tmp_path / "out" / "judgments.jsonl")]
    assert {(j["strategy"], j["order"]) for j in judgments} == {
        (s, o) for s in ("single", "fuse") for o in ("ab", "ba")
    }
    # Order "ba" puts the strategy's answer in position B: the judge saw it swapped.
    judge_requests = [
        r for r in fake.requests if "impartial judge comparing" in str(r["messages"][0])
    ]
    assert len(judge_requests) == 4 * 2 * 2
    swapped = [r for r in judge_requests if "<answer_A>\nREFERENCE" in r["messages"][1]["content"]]
    assert len(swapped) == 4 * 2
    stats = result.analysis.judge
    assert stats.unparseable == 0 and stats.pairs == 8 and stats.consistent_pairs == 8
    assert stats.position == {"A": 4, "B": 4, "tie": 8}


async def test_a_position_biased_judge_is_reported_and_cancels_out(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder(pairwise=lambda a, b: "First one. [[A]]"))
    result = await _run(tmp_path, fake_url)
    task = result.analysis.tasks[0]
    assert task.estimates["fuse"].mean == 0.5 == task.estimates["single"].mean
    stats = result.analysis.judge
    assert stats.position_a_share == 1.0 and stats.consistent_pairs == 0 and stats.pairs == 8
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "position bias: decisive verdicts for position A 100.0%" in html


async def test_unparseable_replies_are_counted_and_never_become_ties(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    def judge(a: str, b: str) -> str:
        if "Fused" in a:
            return "Hmm, hard to say <b>really</b>."  # fuse in position A: no verdict
        if "Fused" in b:
            return "[[B]]"
        return "I would not pick one."  # single vs reference: never a verdict

    make_fake(responder=make_responder(pairwise=judge))
    result = await _run(tmp_path, fake_url)
    task = result.analysis.tasks[0]
    # fuse: only the swapped order parsed, and it is a win; single: no verdict at all.
    assert task.estimates["fuse"].mean == 1.0 and task.estimates["fuse"].n == 4
    assert task.estimates["single"].n == 0 and task.unscored["single"] == 4
    stats = result.analysis.judge
    assert stats.replies == 16 and stats.unparseable == 12
    judgments = read_jsonl(tmp_path / "out" / "judgments.jsonl")
    assert sum(1 for j in judgments if not j["parsed"]) == 12
    assert all(j["verdict"] is None for j in judgments if not j["parsed"])
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "unparseable: 12" in html
    assert "&lt;b&gt;really&lt;/b&gt;" in html and "<b>really</b>" not in html


async def test_head_to_head_and_rubric_modes(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder(rubric="Good. Rating: [[8]]"))
    data = write_jsonl(tmp_path / "open.jsonl", sum_rows(3, gold=False))
    config = presets_file(tmp_path / "p.toml", fake_url)
    head = await aevaluate(
        data, tmp_path / "h2h", strategies="single,fuse", config=config, preset="panel", fsync=False
    )
    task = head.analysis.tasks[0]
    assert task.metric == "win rate vs single" and task.strategies == ["fuse"]
    assert task.estimates["fuse"].mean == 1.0  # default_pairwise prefers the fused answer
    # Candidates got rubric scores, so the routing log has them (score (8-1)/9).
    routed = read_jsonl(tmp_path / "h2h" / "routing.jsonl")
    assert len(routed) == 9 and all(abs(r["score"] - 7 / 9) < 1e-9 for r in routed)
    rubric = await aevaluate(
        data,
        tmp_path / "rubric",
        strategies="single,fuse",
        config=config,
        preset="panel",
        judge_mode="rubric",
        fsync=False,
    )
    task = rubric.analysis.tasks[0]
    assert task.metric == "rubric score"
    assert abs(task.estimates["fuse"].mean - 7 / 9) < 1e-9


async def test_identical_answers_are_judged_once_and_their_cost_counted_once(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder(pairwise=lambda a, b: "[[TIE]]"))
    result = await aevaluate(
        _reference_rows(tmp_path, 3),
        tmp_path / "out",
        strategies="single,vote",  # vote picks alpha's answer, the same text as single
        config=presets_file(tmp_path / "p.toml", fake_url),
        preset="panel",
        fsync=False,
        judge_candidates=False,
    )
    judge_calls = [r for r in fake.requests if "impartial judge comparing" in str(r["messages"][0])]
    assert len(judge_calls) == 3 * 2
    judgments = read_jsonl(tmp_path / "out" / "judgments.jsonl")
    assert len(judgments) == 3 * 2 * 2
    reused = [j for j in judgments if j.get("reused_from")]
    assert len(reused) == 6 and all(j["prompt_tokens"] == 0 for j in reused)
    task = result.analysis.tasks[0]
    assert task.estimates["vote"].mean == task.estimates["single"].mean == 0.5
    assert result.analysis.judge.replies == 6 and result.analysis.judge.pairs == 3
