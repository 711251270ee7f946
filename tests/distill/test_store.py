"""The append-only store: whole lines, torn tails cut on restart, one writer at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.distill import DistillOutputError, JsonlAppender, scan_jsonl


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
