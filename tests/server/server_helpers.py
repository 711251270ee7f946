"""Helpers for the server tests: run a polyfuse server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from polyfuse.presets import load_config
from polyfuse.server import create_app
from polyfuse.testing import serve


@dataclass(frozen=True)
class RunningServer:
    """A polyfuse server running in a thread."""

    root_url: str
    app: Any

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as base_url."""
        return self.root_url + "/v1"

    @property
    def chat_url(self) -> str:
        return self.root_url + "/v1/chat/completions"

    def in_flight(self) -> int:
        return int(httpx.get(self.root_url + "/health", timeout=5).json()["in_flight"])


def presets_for(fake_url: str, **overrides: Any) -> dict[str, Any]:
    """The test presets: endpoints on the fake server, a fusion preset and a vote preset."""
    config: dict[str, Any] = {
        "endpoints": {
            "fake": {
                "base_url": fake_url,
                "model": "fake-model",
                "max_retries": 0,
                "supports_n": True,
            },
            "fusor": {"base_url": fake_url, "model": "fusor-model", "max_retries": 0},
        },
        "presets": {
            "fast": {"pool": ["fake"], "n": 3, "fusor": "fusor"},
            "vote": {"pool": ["fake"], "n": 3, "strategy": "vote", "vote_extract": "exact"},
        },
        "server": {},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value}
    return config


@contextlib.contextmanager
def running(config: dict[str, Any]) -> Generator[RunningServer, None, None]:
    """Serve ``create_app(config)`` with uvicorn (lifespan on) in a daemon thread."""
    app = create_app(load_config(config))
    with serve(app, lifespan="on") as served:
        yield RunningServer(root_url=f"http://127.0.0.1:{served.port}", app=app)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
