"""``polyfuse ask --adaptive`` against the fake server, as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from polyfuse import FusionResult
from polyfuse.testing import FakeOpenAIServer


def _ask(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYFUSE_API")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", "ask", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_ask_adaptive_stops_early(fake: FakeOpenAIServer, fake_url: str) -> None:
    def same(body: dict[str, Any], index: int) -> str:
        return "It is 42."

    fake.responder = same
    run = _ask("What is 6 * 7?", "-e", fake_url, "-m", "fake-model", "-n", "8",
               "-s", "vote", "--adaptive", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = FusionResult.model_validate_json(run.stdout)
    assert result.sampling is not None and result.sampling.samples_used == 3
    assert result.usage.saved.calls == 5


def test_ask_consensus_flags(fake: FakeOpenAIServer, fake_url: str) -> None:
    fake.responder = lambda body, index: "It is 42."
    run = _ask("What is 6 * 7?", "-e", fake_url, "-m", "fake-model", "-n", "3",
               "--answer-extract", "last_number", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = FusionResult.model_validate_json(run.stdout)
    assert result.aggregation.calls == [] and "consensus" in result.aggregation.notes[0]
    off = _ask("What is 6 * 7?", "-e", fake_url, "-m", "fake-model", "-n", "3",
               "--answer-extract", "last_number", "--consensus", "off", "--json")  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert len(FusionResult.model_validate_json(off.stdout).aggregation.calls) == 1
    bad = _ask("q", "-e", fake_url, "-m", "fake-model", "--consensus", "maybe")
    assert bad.returncode != 0 and "consensus" in bad.stderr


def test_ask_says_what_adaptive_sampling_saved(fake: FakeOpenAIServer, fake_url: str) -> None:
    fake.responder = lambda body, index: "It is 42."
    run = _ask("What is 6 * 7?", "-e", fake_url, "-m", "fake-model", "-n", "8",
               "-s", "fuse", "--adaptive", "--answer-extract", "last_number")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "It is 42."
    summary = " ".join(run.stderr.split())
    assert "adaptive: 3 of 8 samples (settled)" in summary
    assert "consensus shortcut: no aggregator call" in summary
    assert "saved 6 call(s), ~" in summary
