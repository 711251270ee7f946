"""examples/rag_fusion.py runs end to end: against servers by URL, and on the local model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from li_helpers import UNSUPPORTED, EmbeddingsRoute

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rag_fusion.py"
QUESTION = "When was the Eiffel Tower completed?"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_example_against_endpoints_by_url(embeddings_route: EmbeddingsRoute, fake_url: str) -> None:
    out = run(
        "--base-url", fake_url, "--model", "m",
        "--embed-base-url", fake_url, "--embed-model", "hashed",
        "--drafts", "3", "--top-k", "2", QUESTION,
    )  # fmt: skip
    answer, report = out.split("\n\nsources cited:\n")
    assert answer.startswith("The Eiffel Tower was completed in 1889")
    assert UNSUPPORTED not in answer
    cited = next(line for line in report.splitlines() if line.startswith("  [1] eiffel:"))
    assert "The Eiffel Tower was completed in 1889" in cited
    assert report.count(" ok ") == 3
    assert "usage:" in report and embeddings_route.requests


@pytest.mark.local_model
def test_example_offline_on_the_local_model() -> None:
    out = run("--local", "--drafts", "2", "--max-tokens", "16", "--no-stream", QUESTION)
    assert "drafts:\n  #0 ok" in out and "#1 ok" in out
    assert "usage:" in out
