"""The replay benchmark's logic on a small generated pool."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from benchmarks.adaptive_replay import (
    beta_rule,
    common_questions,
    load_pool,
    main,
    panels,
    replay,
    vote,
)

from polyfuse.adaptive import AdaptiveSampling


def _write_pool(path: Path) -> None:
    # four models on three questions; "weak" is always wrong, "odd" skips q2
    rows: list[dict[str, object]] = []
    for model, answers in {
        "good": ["1", "2", "3"],
        "fine": ["1", "2", "4"],
        "meh": ["1", "9", "3"],
        "weak": ["7", "8", None],
    }.items():
        for q, answer in enumerate(answers):
            gold = ["1", "2", "3"][q]
            rows.append(
                {
                    "id": f"q{q}",
                    "model": model,
                    "extracted_answer": answer,
                    "correct": int(answer == gold),
                }
            )
    rows.append({"id": "q9", "model": "good", "extracted_answer": "5", "correct": 1})
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


def test_loading_ranking_and_voting(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl.gz"
    _write_pool(path)
    pool = load_pool(path)
    questions = common_questions(pool)
    assert questions == ["q0", "q1", "q2"]
    ranked = panels(pool, questions, 2)
    assert ranked["weakest"][0] == "weak" and ranked["strongest"][-1] == "good"
    assert vote([("1", True), ("2", False), ("2", False)]) is False
    assert vote([("1", True), ("2", False)]) is True  # a tie goes to the first answer
    assert vote([(None, False)]) is False


def test_replay_stops_with_polyfuses_rule() -> None:
    answers = [("5", True)] * 8
    rule = beta_rule(AdaptiveSampling(first=3, confidence=0.8))
    assert replay(answers, rule) == (True, 3)
    assert replay(answers, None) == (True, 8)
    split = [("5", True), ("6", False)] * 4
    assert replay(split, rule) == (True, 8)


def test_the_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pool.jsonl.gz"
    _write_pool(path)
    main([str(path), "--orders", "2", "--panel", "3", "--confidence", "0.8"])
    out = capsys.readouterr().out
    assert "| weakest | full vote |" in out and "| strongest | beta 0.8 |" in out
    assert "3 questions, 2 orders, first=3" in out


def test_folds_tune_on_some_questions_and_report_on_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pool.jsonl.gz"
    _write_pool(path)
    main([str(path), "--orders", "2", "--panel", "3", "--folds", "2"])
    out = capsys.readouterr().out
    assert "3 questions, 2 orders, 2 folds" in out
    assert "| 1 of 2 (2 q) | tuned: first=" in out and "| 2 of 2 (1 q) |" in out
    assert "| weakest |" in out and "| strongest |" in out and "calls of 3" in out
    with pytest.raises(SystemExit):
        main([str(path), "--folds", "1"])
