"""Ctrl-C once on ``polyfuse distill``: no new row starts, the rows in flight are written, the
exit status says it stopped (130), and the same command finishes the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from distill_helpers import TEACHERS, read_jsonl, responder, write_prompts

from polyfuse.testing import FakeOpenAIServer, LatencyModel
from subprocess_helpers import reaped, wait_for_a_request

ROWS = 6


def test_ctrl_c_once_writes_the_rows_in_flight_and_exits_130(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=responder, latency=LatencyModel(ttft_s=1.5))
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": f"Q{i}?"} for i in range(ROWS)])
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "polyfuse.distill", str(source), "-o", str(out)]
    for name in TEACHERS:
        command += ["--teacher", f"{name}@{fake_url}"]
    command += ["--fusor", f"fusor@{fake_url}", "--max-rows-in-flight", "2", "--no-progress"]
    with reaped(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ) as child:
        wait_for_a_request(fake, child)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "SIGINT: no new rows are started" in stderr
    assert f"stopped (SIGINT): {ROWS - 2} row(s) not started" in stderr
    records = read_jsonl(out)
    assert len(records) == 2 and all(r["messages"][-1]["content"] for r in records)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    prompts = [json.dumps(r["messages"][0]) for r in read_jsonl(out)]
    assert len(prompts) == len(set(prompts)) == ROWS
