"""Helpers for tests that drive a polyfuse command in a subprocess against the fake server."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from polyfuse.testing import FakeOpenAIServer


def wait_for_a_request(fake: FakeOpenAIServer, child: subprocess.Popen[Any]) -> None:
    """Wait (60 s at most) until the command's first request reached ``fake``."""
    for _ in range(1200):
        if fake.requests or child.poll() is not None:
            break
        threading.Event().wait(0.05)
    assert fake.requests, "the command never reached the server"


@contextmanager
def reaped(child: subprocess.Popen[Any]) -> Generator[subprocess.Popen[Any], None, None]:
    """``child``, killed and waited for on the way out if it still runs (a failed assertion)."""
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
