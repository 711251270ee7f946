"""``polyfuse serve --config ...`` as a real subprocess: start, answer, drain, exit cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_helpers import EchoingUpstream, parse_raw_response, raw_exchange, wait_until

from polyfuse.testing import FakeOpenAIServer, FakeReply, LatencyModel

API_KEY = "sk-cli-test-key-8c1f"
# The console script pip installed next to this interpreter (`polyfuse = polyfuse.cli:main`).
SCRIPT = Path(sys.executable).with_name("polyfuse")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "polyfuse.cli"]


def write_config(path: Path, fake_url: str, *, server: str = "") -> Path:
    path.write_text(
        f"""
[endpoints.fake]
base_url = "{fake_url}"
model = "fake-model"
max_retries = 0

[presets.fast]
pool = ["fake"]
n = 2

[server]
api_keys_env = "TEST_SERVE_KEYS"
shutdown_timeout_s = 20
{server}
"""
    )
    return path


class Served:
    """A ``polyfuse serve`` subprocess and its log lines."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "TEST_SERVE_KEYS": API_KEY, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [*CLI, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n{''.join(self.log)}")

    def drain_log(self) -> str:
        while not self.lines.empty():
            self.log.append(self.lines.get_nowait())
        return "".join(self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def launch() -> Iterator[Callable[[list[str]], Served]]:
    started: list[Served] = []

    def start(args: list[str]) -> Served:
        served = Served(args)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def slow_answer(body: dict[str, Any], index: int) -> FakeReply:
    return FakeReply(content=" ".join(f"part{i}" for i in range(40)))


def test_serve_answers_then_drains_and_exits_cleanly(
    launch: Callable[[list[str]], Served],
    make_fake: Callable[..., FakeOpenAIServer],
    fake_url: str,
    tmp_path: Path,
) -> None:
    make_fake()
    config = write_config(tmp_path / "presets.toml", fake_url)
    served = launch(["--config", str(config), "--port", "0"])
    port = int(served.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)")[1])
    root = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: httpx.get(root + "/health", timeout=5).status_code == 200)

    client = openai.OpenAI(base_url=root + "/v1", api_key=API_KEY, max_retries=0)
    answer = client.chat.completions.create(
        model="fusion/fast", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=root + "/v1", api_key="wrong", max_retries=0).models.list()

    # A stream in flight when SIGTERM arrives still completes.
    fake = make_fake(responder=slow_answer, latency=LatencyModel(tokens_per_s=40))
    stream = client.chat.completions.create(
        model="fusion/fast",
        messages=[{"role": "user", "content": "long"}],
        stream=True,
    )
    pieces: list[str] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == 1:
                served.process.send_signal(signal.SIGTERM)
    assert "".join(pieces) == slow_answer({}, 0).content
    assert served.process.wait(30) == 0
    log = served.drain_log()
    assert API_KEY not in log
    assert fake.disconnects == 0


def test_serve_refuses_a_bad_config(
    launch: Callable[[list[str]], Served], fake_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "bad.toml", fake_url, server='api_key = "sk-inline"')
    served = launch(["--config", str(config)])
    assert served.process.wait(30) == 2
    log = served.drain_log()
    assert "error:" in log and "api_keys_env" in log
    assert "Traceback" not in log


def test_serve_runs_with_the_connection_limits_and_a_redacted_log(
    launch: Callable[[list[str]], Served],
    _fake_switch: tuple[Any, str],
    fake_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream_key = "sk-cli-upstream-canary-5a5a5a5a"
    monkeypatch.setenv("TEST_SERVE_UPSTREAM", upstream_key)
    echo = EchoingUpstream(FakeOpenAIServer(), fail={"fake-model": 500})
    _fake_switch[0].app = echo
    config = tmp_path / "presets.toml"
    config.write_text(
        f"""
[endpoints.fake]
base_url = "{fake_url}"
model = "fake-model"
max_retries = 0
api_key_env = "TEST_SERVE_UPSTREAM"

[presets.fast]
pool = ["fake"]
n = 2

[server]
api_keys_env = "TEST_SERVE_KEYS"
max_header_bytes = 2048
header_timeout_s = 1
log_level = "debug"
"""
    )
    served = launch(["--config", str(config), "--port", "0"])
    port = int(served.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)")[1])
    status, _, body = parse_raw_response(
        raw_exchange(
            port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 50_000 + b"\r\n\r\n"
        )
    )
    assert status == 431 and b"max_header_bytes" in body
    assert parse_raw_response(raw_exchange(port))[0] == 408  # a silent connection
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "fusion/fast", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=20,
    )
    assert response.status_code == 502 and upstream_key not in response.text
    assert echo.echoed and upstream_key in echo.echoed[0]
    served.wait_for_line(r"502 no_candidates")
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(30) == 0
    log = served.drain_log()
    assert "HTTP 500" in log  # the reason is logged ...
    assert upstream_key not in log and upstream_key[:16] not in log  # ... the key never
    assert API_KEY not in log
