"""The one reader of eval input files (eval sets and pools files, plain or gzip-ed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from polyfuse.eval import EvalDataError
from polyfuse.eval.jsonl_input import read_objects


def test_objects_come_with_their_line_numbers_from_plain_and_gzip_files(tmp_path: Path) -> None:
    text = '{"a": 1}\n\n{"a": 2}\n'
    plain, packed = tmp_path / "rows.jsonl", tmp_path / "rows.jsonl.gz"
    plain.write_text(text, encoding="utf-8")
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        assert list(read_objects(path, what="eval set")) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n[1, 2]\n', r"rows.jsonl:2: not a JSON object"),
        ("{nope\n", r":1: not valid JSON"),
    ],
)
def test_a_line_that_is_not_an_object_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EvalDataError, match=message):
        list(read_objects(path, what="pools file"))


def test_a_missing_file_says_which_kind_it_is(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="the pools file .* does not exist"):
        list(read_objects(tmp_path / "none.jsonl", what="pools file"))
