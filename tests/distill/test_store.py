"""The append-only store: whole lines, torn tails cut on restart, one writer at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.distill import (
    DistillOutputError,
    JsonlAppender,
    JsonlRecords,
    read_jsonl,
    scan_jsonl,
)
from polyfuse.eval import EvalDataError
from polyfuse.eval.analysis import read_generations
from polyfuse.eval.judging import read_judgments


def _line(digest: str, config: str = "c1") -> str:
    return json.dumps({"messages": [], "provenance": {"input_hash": digest, "config": config}})


def test_appended_lines_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path) as out:
        out.append([_line("a"), _line("b")])
        out.append([])
        out.append([json.dumps({"input_hash": "c", "config": "c2", "error": {}})])
    scan = scan_jsonl(path, repair=True)
    assert scan.hashes == {"a": 1, "b": 1, "c": 1}
    assert scan.configs == {"c1", "c2"}
    assert scan.lines == 3 and scan.torn_bytes == 0


def test_a_torn_last_line_is_cut_and_appending_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = _line("a") + "\n"
    torn = _line("b")[:17]
    path.write_text(whole + torn, encoding="utf-8")
    looked = scan_jsonl(path, repair=False)
    assert looked.torn_bytes == len(torn) and path.read_text() == whole + torn
    scan = scan_jsonl(path, repair=True)
    assert scan.hashes == {"a": 1} and scan.torn_bytes == len(torn)
    assert path.read_text(encoding="utf-8") == whole
    with JsonlAppender(path) as out:
        out.append([_line("b")])
    assert scan_jsonl(path, repair=True).hashes == {"a": 1, "b": 1}


def test_a_foreign_line_is_refused_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(_line("a") + "\n" + '{"hello": 1}\n', encoding="utf-8")
    with pytest.raises(DistillOutputError, match="line 2 is not a polyfuse distill record"):
        scan_jsonl(path, repair=True)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path), pytest.raises(DistillOutputError, match="another process"):
        JsonlAppender(path).open()
    with JsonlAppender(path) as again:  # the lock is released on close
        again.append([_line("a")])


def test_unwritable_paths_fail_on_open(tmp_path: Path) -> None:
    with pytest.raises(DistillOutputError, match="cannot write"):
        JsonlAppender(tmp_path / "missing" / "out.jsonl").open()


def test_read_jsonl_passes_over_blank_lines_and_a_torn_tail_only(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    assert read_jsonl(path, kind="record", accept=lambda _: True) == []  # no file yet
    path.write_text(_line("a") + "\n\n" + _line("b") + "\n" + _line("c")[:9], encoding="utf-8")
    records = read_jsonl(path, kind="record", accept=lambda r: "provenance" in r)
    assert [r["provenance"]["input_hash"] for r in records] == ["a", "b"]
    with path.open("rb") as handle:
        reader = JsonlRecords(handle, path, kind="record", accept=lambda _: True)
        assert len(list(reader)) == 2
    assert (
        reader.torn_bytes == 9 and reader.whole_bytes == len(_line("a") + "\n\n" + _line("b")) + 1
    )


@pytest.mark.parametrize("bad", ["{nope", "[1, 2]", '{"other": 1}'])
def test_read_jsonl_refuses_any_other_line_that_is_not_a_record(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(_line("a") + "\n" + bad + "\n" + _line("b") + "\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="line 2 is not a distill line"):
        read_jsonl(
            path, kind="distill line", accept=lambda r: "provenance" in r, error=EvalDataError
        )


def test_eval_readers_share_the_strict_reader(tmp_path: Path) -> None:
    generations, judgments = tmp_path / "generations.jsonl", tmp_path / "judgments.jsonl"
    generations.write_text('{"strategies": {}}\n{"strategies": {}, "x"', encoding="utf-8")
    judgments.write_text('{"key": "k1"}\n{"key": "k2"}\n{"ke', encoding="utf-8")
    assert len(read_generations(generations)) == 1
    assert [j["key"] for j in read_judgments(judgments)] == ["k1", "k2"]
    generations.write_text('{"input_hash": "h"}\n{"strategies": {}}\n', encoding="utf-8")
    with pytest.raises(EvalDataError, match="line 1 is not a polyfuse eval generation record"):
        read_generations(generations)
    judgments.write_text('{"key": "k1"}\nnot json\n{"key": "k2"}\n', encoding="utf-8")
    with pytest.raises(EvalDataError, match="line 2 is not a polyfuse eval judgment"):
        read_judgments(judgments)
