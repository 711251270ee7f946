"""Shared by the playground tests: the fake upstream's answers, the presets, and a real
``polyfuse serve`` process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from polyfuse.testing import FakeOpenAIServer, FakeReply, Fault

API_KEY = "pg-test-key-0123456789"
KEYS_ENV = "POLYFUSE_PLAYGROUND_TEST_KEYS"
UPSTREAM_SECRET = "sk-upstream-secret-4242"

ANSWERS = {
    "alpha": "The sky looks blue because air molecules scatter short wavelengths more strongly. "
    "This effect is called Rayleigh scattering.",
    "beta": "Sunlight contains every colour of the rainbow. "
    "Blue light is scattered the most by the atmosphere.",
    "gamma": "At sunset the light crosses much more air, so the sky turns red and orange.",
}
FUSED = (
    "The sky looks blue because air molecules scatter short wavelengths more strongly. "
    "Blue light is scattered the most by the atmosphere. "
    "At sunset the light crosses much more air, so the sky turns red and orange."
)
# Asked with a prompt containing XSS_TRIGGER, the candidates answer markup meant to run.
XSS_TRIGGER = "markup please"
XSS_ANSWERS = {
    "alpha": "<img src=x onerror=alert(1)>",
    "beta": "<script>alert(2)</script>",
    "gamma": '<a href="javascript:alert(3)">click</a>',
}
XSS_FUSED = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"
# Asked with a prompt containing LEAK_TRIGGER, every model answers with the server's API key.
LEAK_TRIGGER = "tell me the key"


def responder(body: dict[str, Any], index: int) -> FakeReply:
    """Each model's answer: fixed texts, or markup when the prompt asks for it."""
    model = str(body.get("model"))
    # The fusor's prompt quotes the candidates; the user's question is in our own turns.
    xss = XSS_TRIGGER in json.dumps(body.get("messages"))
    if LEAK_TRIGGER in json.dumps(body.get("messages")):
        prefix = "fused: " if model == "fusor" else ""
        return FakeReply(content=f"{prefix}the key is {API_KEY} ok")
    if model == "fusor":
        return FakeReply(content=XSS_FUSED if xss else FUSED)
    answers = XSS_ANSWERS if xss else ANSWERS
    return FakeReply(content=answers.get(model, f"{model} says hello"))


def make_upstream() -> FakeOpenAIServer:
    """The fake upstream: "broken" always answers 500 (with a secret in its body) and "slow"
    does not answer for a minute."""
    fake = FakeOpenAIServer(responder=responder)
    fake.inject(
        Fault(
            "status",
            status=500,
            match_model="broken",
            times=10_000,
            body={"error": {"message": f"internal detail {UPSTREAM_SECRET} leaked"}},
        ),
        Fault("slow_first_byte", delay_s=60, match_model="slow", times=10_000),
    )
    return fake


def presets_config(fake_url: str, *, server: dict[str, Any] | None = None) -> dict[str, Any]:
    """The presets the playground tests use, every endpoint on the fake upstream."""
    names = ["alpha", "beta", "gamma", "broken", "slow", "fusor"]
    return {
        "endpoints": {
            name: {"base_url": fake_url, "model": name, "max_retries": 0} for name in names
        },
        "presets": {
            "panel": {"pool": ["alpha", "beta", "gamma"], "n": 1, "fusor": "fusor"},
            "vote": {
                "pool": ["alpha", "beta", "gamma"],
                "n": 1,
                "strategy": "vote",
                "vote_extract": "exact",
            },
            "failing": {"pool": ["alpha", "broken", "gamma"], "n": 1, "fusor": "fusor"},
            "quorum": {"pool": ["alpha", "beta", "slow"], "n": 1, "fusor": "fusor", "quorum": 2},
            "allfail": {"pool": ["broken"], "n": 2, "fusor": "fusor"},
            "deadline": {"pool": ["alpha", "slow"], "n": 1, "fusor": "fusor", "deadline": 1.0},
            "stuck": {"pool": ["slow"], "n": 1, "fusor": "fusor"},
            "badfusor": {"pool": ["alpha", "beta", "gamma"], "n": 1, "fusor": "broken"},
            "showcase": {
                "pool": ["alpha", "beta", "gamma", "broken", "slow"],
                "n": 1,
                "fusor": "fusor",
                # A deadline, not a quorum: a quorum could cancel "broken" before it fails.
                "deadline": 5.0,
                "description": "every candidate state at once, for the screenshot",
            },
        },
        # The events API shows candidates: the server must allow returning them.
        "server": {"allow_return_candidates": True, **(server or {})},
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_toml(config: dict[str, Any], path: Path) -> Path:
    """Write a presets config (tables of tables of scalars, lists and inline tables)."""
    lines: list[str] = []
    for section, tables in config.items():
        if section == "server":
            lines.append("[server]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in tables.items())
            continue
        for name, table in tables.items():
            lines.append(f"[{section}.{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running ``polyfuse serve``."""

    root_url: str
    process: subprocess.Popen[bytes]

    @property
    def events_url(self) -> str:
        return self.root_url + "/v1/fusion/events"

    def auth(self, key: str = API_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def polyfuse_serve(config_path: Path, log_path: Path) -> Generator[Served, None, None]:
    """Run ``polyfuse serve`` (with API keys) on a free port of 127.0.0.1 until the block ends."""
    port = free_port()
    env = {**os.environ, KEYS_ENV: API_KEY}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "polyfuse.cli", "serve", "--config", str(config_path)]
            + ["--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"polyfuse serve exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(root + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"polyfuse serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Served(root_url=root, process=process)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def read_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Parse an SSE response into its events' data, checking each ``event:`` name matches."""
    events: list[dict[str, Any]] = []
    name: str | None = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
            assert data["type"] == name, (name, data)
            events.append(data)
        elif not line:
            name = None
    return events


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
