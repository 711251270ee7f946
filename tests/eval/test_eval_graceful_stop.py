"""Ctrl-C on a long eval: once, the prompts in flight finish, are judged and reported and the
rest waits for a rerun; twice, it stops at once. Real signals to a real ``polyfuse eval``."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from eval_helpers import make_responder, presets_file, read_jsonl, sum_rows, write_jsonl

from polyfuse.testing import FakeOpenAIServer, LatencyModel
from subprocess_helpers import reaped, wait_for_a_request

ROWS = 8


def _command(tmp_path: Path, fake_url: str) -> list[str]:
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(ROWS))
    presets = presets_file(tmp_path / "p.toml", fake_url)
    return [
        *(sys.executable, "-m", "polyfuse.cli", "eval", str(data), "-o", str(tmp_path / "out")),
        *("--config", str(presets), "--preset", "panel", "--strategies", "single,vote,fuse"),
        *("--max-rows-in-flight", "2", "--no-progress", "--no-fsync"),
    ]


def test_ctrl_c_once_finishes_the_prompts_in_flight_and_reports_them(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=make_responder(), latency=LatencyModel(ttft_s=1.5))
    command = _command(tmp_path, fake_url)
    with reaped(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ) as child:
        wait_for_a_request(fake, child)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "SIGINT: no new rows are started" in stderr
    # The two prompts in flight finished every strategy and were graded and reported.
    records = read_jsonl(tmp_path / "out" / "generations.jsonl")
    assert len(records) == 2
    assert all(set(r["strategies"]) == {"single", "vote", "fuse"} for r in records)
    assert all(r["strategies"]["fuse"]["answer"] for r in records)
    assert f"stopped (SIGINT): {ROWS - 2} prompt(s) not started" in stdout
    assert "2 prompts evaluated" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    # The same command picks up the rest.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed: 2 prompt(s) were already generated" in rerun.stdout
    assert len(read_jsonl(tmp_path / "out" / "generations.jsonl")) == ROWS


def test_ctrl_c_twice_stops_at_once_and_loses_nothing_written(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    # Each call takes 30 s: nothing can finish between the two signals.
    fake = make_fake(responder=make_responder(), latency=LatencyModel(ttft_s=30.0))
    command = _command(tmp_path, fake_url)
    with reaped(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ) as child:
        wait_for_a_request(fake, child)
        child.send_signal(signal.SIGINT)
        assert child.stderr is not None
        assert "no new rows are started" in child.stderr.readline()  # the first was taken
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=25)
    assert child.returncode != 0, stderr
    generations = tmp_path / "out" / "generations.jsonl"
    assert read_jsonl(generations) == []  # stopped mid-call: no record, no torn line
