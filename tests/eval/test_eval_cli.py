"""``polyfuse eval`` from the command line: replay, live, errors, and SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer
from eval_helpers import make_responder, presets_file, read_jsonl, sum_rows, write_jsonl
from test_eval_replay import zeroeval_file
from typer.testing import CliRunner

from polyfuse.cli.eval import register
from polyfuse.testing import FakeOpenAIServer, LatencyModel

app = typer.Typer()


@app.callback()
def _main() -> None:
    """polyfuse"""


register(app)


def test_cli_replays_a_zeroeval_pool(tmp_path: Path) -> None:
    source = zeroeval_file(tmp_path / "gsm.jsonl.gz")
    out = tmp_path / "out"
    args = ["eval", str(source), "--replay", "-o", str(out), "--strategies", "single,vote"]
    args += ["--panel", "m-strong,m-good,m-fair", "--sweep", "--no-progress", "--no-fsync"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "gsm8k (accuracy): single is best" in result.output
    assert "routing log: 120 records" in result.output
    for name in ("report.html", "report.md", "judgments.jsonl", "routing.jsonl", "summary.json"):
        assert (out / name).exists()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [s["size"] for s in summary["sweep"]] == [1, 2, 3]


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    source = zeroeval_file(tmp_path / "gsm.jsonl.gz")
    runner = CliRunner()
    bad = runner.invoke(
        app,
        [
            "eval",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "--replay",
            "--strategies",
            "single,magic",
            "--no-progress",
        ],
    )
    assert bad.exit_code == 2 and "unknown strategies magic" in bad.output
    live = runner.invoke(app, ["eval", str(source), "-o", str(tmp_path / "o2"), "--no-progress"])
    assert live.exit_code == 2 and "--config presets.toml" in live.output
    mode = runner.invoke(
        app, ["eval", str(source), "-o", str(tmp_path / "o3"), "--judge-mode", "x"]
    )
    assert mode.exit_code == 2


def test_cli_live_eval_on_the_fake_server(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder())
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(4))
    config = presets_file(tmp_path / "p.toml", fake_url)
    out = tmp_path / "out"
    args = ["eval", str(data), "-o", str(out), "-c", str(config), "--preset", "panel"]
    args += ["--strategies", "single,vote,fuse", "--price", "alpha=1/1", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sums (accuracy)" in result.output and "report:" in result.output
    assert len(read_jsonl(out / "generations.jsonl")) == 4


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_run_judges_nothing_twice_and_loses_nothing(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=make_responder(), latency=LatencyModel(ttft_s=0.02))
    rows = sum_rows(24, gold=False)
    for row in rows:
        row["reference"] = "The reference answer."
    data = write_jsonl(tmp_path / "open.jsonl", rows)
    config = presets_file(tmp_path / "p.toml", fake_url)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "polyfuse.cli", "eval", str(data), "-o", str(out)]
    command += ["-c", str(config), "--preset", "panel", "--strategies", "single,fuse"]
    command += ["--no-progress"]
    generations, judgments = out / "generations.jsonl", out / "judgments.jsonl"
    per_prompt = 2 * 2 + 3  # two strategies in two orders, three candidates' rubric scores
    rng = random.Random(20261204)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed_in_judging = False
    for round_ in range(3):
        done = _lines(generations) + _lines(judgments)
        target = done + rng.randint(5, 40)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 90
            while _lines(generations) + _lines(judgments) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the run did not progress"
                time.sleep(0.005)
            if proc.poll() is not None:  # it finished before the kill point
                break
            killed_in_judging |= _lines(judgments) > 0
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            if proc.stderr:
                proc.stderr.close()
        gen_keys = [r["input_hash"] for r in read_jsonl(generations) if r]
        assert len(gen_keys) == len(set(gen_keys)), f"round {round_}: a prompt generated twice"
    finished = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert finished.returncode == 0, finished.stderr.decode()
    gen = read_jsonl(generations)
    assert len(gen) == len({r["input_hash"] for r in gen}) == 24
    keys = [j["key"] for j in read_jsonl(judgments)]
    assert len(keys) == len(set(keys)) == 24 * per_prompt
    assert judgments.read_bytes().endswith(b"\n")
    assert killed_in_judging or len(keys) == 24 * per_prompt
