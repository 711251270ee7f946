"""What ``polyfuse ask`` shows: batched usage said as such, and flags without a value type."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cli_helpers import run_cli

from polyfuse.cli._view import BATCHED_NOTE
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


# First-run download progress off a terminal is tested in tests/local/test_download.py
# (test_progress_is_shown_as_lines_when_stderr_is_not_a_terminal), on fake part wheels.
