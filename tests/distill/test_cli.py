"""The ``distill`` command: in process with Typer's runner, and as a subprocess killed with
SIGKILL at random points and resumed."""

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

import pytest
import typer
from distill_helpers import TEACHERS, read_jsonl, responder, write_prompts
from typer.testing import CliRunner

from polyfuse.cli.distill import EXIT_ROWS_FAILED, register
from polyfuse.distill import input_hash
from polyfuse.testing import FakeOpenAIServer, Fault, LatencyModel


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """polyfuse"""

    register(app)
    return app


def _panel_flags(url: str) -> list[str]:
    flags: list[str] = []
    for name in TEACHERS:
        flags += ["--teacher", f"{name}@{url}"]
    return [*flags, "--fusor", f"fusor@{url}"]


def test_cli_writes_records_and_a_summary(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"q": "One?"}, "{oops", {"q": "Two?"}])
    out = tmp_path / "out.jsonl"
    args = ["distill", str(source), "-o", str(out), *_panel_flags(fake_url), "--prompt-field", "q"]
    args += ["--aggregations", "fuse,best-of-n"]
    result = CliRunner().invoke(cli, [*args, "--price", "alpha=1/2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "records written" in result.output and "2 → " in result.output
    assert "bad input lines" in result.output
    records = read_jsonl(out)
    assert {r["messages"][-1]["content"] for r in records} == {"Fused: One?", "Fused: Two?"}
    assert all(set(r["provenance"]["aggregations"]) == {"fuse", "best_of_n"} for r in records)
    # With the progress bar on, the bad line is reported by number before the run.
    again = CliRunner().invoke(cli, [*args, "--limit", "0"])
    assert again.exit_code == 0, again.output
    assert "line 2: not valid JSON" in again.output


def test_cli_with_a_presets_file(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    config = tmp_path / "presets.toml"
    endpoints = "".join(
        f'[endpoints.{name}]\nbase_url = "{fake_url}"\nmodel = "{name}"\nmax_retries = 0\n'
        for name in (*TEACHERS, "fusor")
    )
    config.write_text(
        endpoints
        + '[presets.panel]\npool = ["alpha", "beta", "gamma"]\nn = 1\nfusor = "fusor"\n'
        + "params = { temperature = 0.3 }\n"
    )
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "Why?"}])
    out = tmp_path / "pref.jsonl"
    result = CliRunner().invoke(
        cli,
        ["distill", str(source), "-o", str(out), "-c", str(config), "--preset", "panel"]
        + ["--format", "preference", "--judge", "alpha", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    (record,) = read_jsonl(out)
    assert record["chosen"] == [{"role": "assistant", "content": "Fused: Why?"}]
    judge_calls = record["provenance"]["aggregations"]["best_of_n"]["calls"]
    assert {c["name"] for c in judge_calls} == {"alpha"}
    assert all(r.get("temperature") == 0.3 for r in panel_fake.requests if r["model"] == "beta")
    mixed = CliRunner().invoke(
        cli,
        ["distill", str(source), "-o", str(out), "-c", str(config), "--preset", "panel"]
        + ["--n", "2", "--no-progress"],
    )
    assert mixed.exit_code == 2 and "set n in the preset" in mixed.output


def test_cli_exit_codes(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    panel_fake.inject(Fault("status", status=400, match_model="fusor"))
    out = tmp_path / "out.jsonl"
    flags = [*_panel_flags(fake_url), "--no-progress"]
    failed = CliRunner().invoke(cli, ["distill", str(source), "-o", str(out), *flags])
    assert failed.exit_code == EXIT_ROWS_FAILED, failed.output
    assert "rows failed" in failed.output and "out.errors.jsonl" in failed.output
    retried = CliRunner().invoke(
        cli, ["distill", str(source), "-o", str(out), *flags, "--retry-errors"]
    )
    assert retried.exit_code == 0, retried.output
    bad = CliRunner().invoke(
        cli, ["distill", str(source), "-o", str(tmp_path / "no/o.jsonl"), *flags]
    )
    assert bad.exit_code == 2 and "does not exist; create it first" in bad.output
    none = CliRunner().invoke(cli, ["distill", str(source), "-o", str(out), "--no-progress"])
    assert none.exit_code != 0 and "--teacher" in none.output


def _complete_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1].splitlines(keepends=True)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(responder=responder, latency=LatencyModel(ttft_s=0.02))
    questions = [f"Question number {i}?" for i in range(60)]
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": q} for q in questions])
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "polyfuse.distill", str(source), "-o", str(out)]
    command += [*_panel_flags(fake_url), "--max-concurrency", "2", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(20251001)
    kept: list[str] = []
    for _ in range(3):
        target = min(len(kept) + rng.randint(0, 12), len(questions) - 5)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while _count_lines(out) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the run did not progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            if proc.stderr:
                proc.stderr.close()
        lines = _complete_lines(out)
        # What was written stays written, whole, and every record appears once.
        assert lines[: len(kept)] == kept
        hashes = [json.loads(line)["provenance"]["input_hash"] for line in lines]
        assert len(hashes) == len(set(hashes))
        kept = lines

    finished = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert finished.returncode == 0, finished.stderr.decode()
    lines = _complete_lines(out)
    assert out.read_text(encoding="utf-8") == "".join(lines)  # no torn tail left
    assert lines[: len(kept)] == kept
    hashes = [json.loads(line)["provenance"]["input_hash"] for line in lines]
    expected = {input_hash([{"role": "user", "content": q}]) for q in questions}
    assert len(hashes) == len(set(hashes)) == len(questions)
    assert set(hashes) == expected
