"""examples/fuse_endpoint.py runs against a real OpenAI-compatible server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from polyfuse.testing import FakeOpenAIServer, serve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fuse_endpoint.py"


def test_example_fuses_from_a_url() -> None:
    app = FakeOpenAIServer()
    with serve(app) as served:
        done = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "--base-url",
                served.base_url,
                "--model",
                "m",
                "--n",
                "3",
                "Why?",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert "[candidate #2" in done.stdout and "usage:" in done.stdout
    assert len(app.requests) == 2  # one n=3 request + the fusor
