"""Reading prompts: JSONL, CSV, Parquet; messages lists; bad lines with their numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from distill_helpers import write_prompts

from polyfuse.distill import (
    DistillInputError,
    InputProblem,
    InputSpec,
    PromptRow,
    input_hash,
    read_prompts,
)


def _rows(spec: InputSpec) -> tuple[list[PromptRow], list[InputProblem]]:
    items = list(read_prompts(spec))
    return (
        [i for i in items if isinstance(i, PromptRow)],
        [i for i in items if isinstance(i, InputProblem)],
    )


def test_jsonl_text_prompts_and_message_lists(tmp_path: Path) -> None:
    path = write_prompts(
        tmp_path / "p.jsonl",
        [
            {"prompt": "What is 2+2?", "id": "a"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Name a prime."},
                    {"role": "assistant", "content": "7"},
                ]
            },
        ],
    )
    rows, problems = _rows(InputSpec(path, id_field="id"))
    assert problems == []
    assert rows[0].messages == [{"role": "user", "content": "What is 2+2?"}]
    assert rows[0].source_id == "a" and rows[0].line == 1
    # A conversation that already ends with an answer is answered afresh.
    assert [m["role"] for m in rows[1].messages] == ["system", "user"]
    assert rows[1].source_id is None and rows[1].line == 2
    assert rows[0].input_hash == input_hash(rows[0].messages)
    assert rows[0].input_hash != rows[1].input_hash


def test_malformed_lines_are_reported_by_number_and_the_rest_is_read(tmp_path: Path) -> None:
    path = write_prompts(
        tmp_path / "p.jsonl",
        [
            {"prompt": "one"},
            "{not json",
            "",
            "[1, 2]",
            {"question": "no prompt field"},
            {"prompt": ""},
            {"prompt": 42},
            {"messages": [{"role": "wizard", "content": "x"}]},
            {"prompt": "two"},
        ],
    )
    rows, problems = _rows(InputSpec(path))
    assert [r.messages[0]["content"] for r in rows] == ["one", "two"]
    by_line = {p.line: p.message for p in problems}
    assert sorted(by_line) == [2, 4, 5, 6, 7, 8]
    assert "not valid JSON" in by_line[2]
    assert "not an object" in by_line[4]
    assert "no field 'messages' or 'prompt'" in by_line[5] and "question" in by_line[5]
    assert "empty" in by_line[6]
    assert "expected text or a list of messages" in by_line[7]
    assert "wizard" in by_line[8]
    assert [r.line for r in rows] == [1, 9]


def test_prompt_field_system_and_hash_include_the_system_message(tmp_path: Path) -> None:
    path = write_prompts(tmp_path / "p.jsonl", [{"question": "Why?"}])
    plain, _ = _rows(InputSpec(path, prompt_field="question"))
    with_system, _ = _rows(InputSpec(path, prompt_field="question", system="Answer in French."))
    assert with_system[0].messages[0] == {"role": "system", "content": "Answer in French."}
    assert with_system[0].input_hash != plain[0].input_hash


def test_csv_rows_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "topic"])
        writer.writerow(["Why is the sky blue?\nExplain.", "physics"])
        writer.writerow(["", "empty"])
        writer.writerow(["What is DNA?", "biology"])
    rows, problems = _rows(InputSpec(path, prompt_field="question", id_field="topic"))
    assert [r.source_id for r in rows] == ["physics", "biology"]
    assert rows[0].messages[0]["content"] == "Why is the sky blue?\nExplain."
    # Line numbers are where each record starts (the first spans two lines).
    assert [r.line for r in rows] == [2, 5]
    assert [p.line for p in problems] == [4]
    with pytest.raises(DistillInputError, match="no column 'prompt'.*question, topic"):
        list(read_prompts(InputSpec(path, prompt_field="prompt")))


def test_parquet_messages_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "p.parquet"
    table = pa.table(
        {
            "messages": [
                [{"role": "user", "content": "Hi there", "name": None}],
                [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hey"}],
            ],
            "id": [10, 11],
        }
    )
    pq.write_table(table, path)
    rows, problems = _rows(InputSpec(path, id_field="id"))
    assert problems == []
    assert rows[0].messages == [{"role": "user", "content": "Hi there"}]
    assert [r.line for r in rows] == [1, 2] and [r.source_id for r in rows] == [10, 11]
    with pytest.raises(DistillInputError, match="no column 'prompt'"):
        read_prompts(InputSpec(path, prompt_field="prompt"))


def test_missing_or_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DistillInputError, match="does not exist"):
        read_prompts(InputSpec(tmp_path / "nope.jsonl"))
    odd = tmp_path / "p.txt"
    odd.write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(DistillInputError, match="--input-format"):
        read_prompts(InputSpec(odd))
    rows, _ = _rows(InputSpec(odd, format="jsonl"))
    assert len(rows) == 1
