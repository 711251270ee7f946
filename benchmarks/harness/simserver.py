"""The simulated OpenAI-compatible server, run in its own process.

The benchmark clients and the server must not share a process (nor a GIL): the figures are
about the *client's* CPU. :class:`SimServers` starts ``python -m benchmarks.harness.serve_child``
with one or more :class:`ServerSpec` (each served by uvicorn on its own loopback port, all in
one event loop), reads the ports it bound, and stops it on exit. The child stops by itself when
its standard input closes, so a crashed parent never leaves it behind.

Each spec becomes a :class:`polyfuse.testing.FakeOpenAIServer` with a
:class:`polyfuse.testing.LatencyModel` (time to first token, tokens per second, jitter,
capacity, stragglers, forced output length; deterministic given the seed) and
``record=False`` so that long runs do not keep every request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from .procstat import cpu_seconds

__all__ = ["ServerSpec", "SimServers"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServerSpec:
    """One simulated endpoint: how fast it answers and how many requests it serves at once.

    The defaults are the issue's reference workload: 50 ms to first token, then 64 tokens at
    2 ms each (500 tokens/s), so one call takes 178 ms and an ideal N=5 fusion 356 ms.
    """

    ttft_s: float = 0.050
    tokens_per_s: float | None = 500.0
    output_tokens: int = 64
    jitter: float = 0.0
    capacity: int | None = None
    straggler_every: int = 0
    straggler_factor: float = 10.0
    seed: int = 0
    model: str = "sim-model"
    stream_chunk_size: int = 1

    @property
    def call_s(self) -> float:
        """Seconds one non-streaming call takes on an idle server (no jitter, no straggler)."""
        per_token = 1.0 / self.tokens_per_s if self.tokens_per_s else 0.0
        return self.ttft_s + self.output_tokens * per_token

    def slower(self, factor: float) -> ServerSpec:
        """The same endpoint ``factor`` times slower (a straggler endpoint)."""
        tps = self.tokens_per_s / factor if self.tokens_per_s else None
        return ServerSpec(**{**asdict(self), "ttft_s": self.ttft_s * factor, "tokens_per_s": tps})


class SimServers:
    """Run simulated servers in a child process for the duration of a ``with`` block.

    Example::

        with SimServers([ServerSpec()]) as servers:
            url = servers.base_urls[0]   # http://127.0.0.1:PORT/v1
            ...
            print(servers.cpu_seconds())  # CPU the server process has used so far
    """

    def __init__(self, specs: list[ServerSpec], *, startup_timeout_s: float = 30.0) -> None:
        if not specs:
            raise ValueError("SimServers needs at least one ServerSpec")
        self.specs = list(specs)
        self.startup_timeout_s = startup_timeout_s
        self.base_urls: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimServers:
        payload = json.dumps([asdict(s) for s in self.specs])
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.harness.serve_child", payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=_REPO_ROOT,
            env=env,
        )
        line = _read_line(self._proc, self.startup_timeout_s)
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError(
                "the simulated server did not start; run "
                "`python -m benchmarks.harness.serve_child '[{}]'` to see its error"
            )
        ports: list[int] = json.loads(line)["ports"]
        self.base_urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None

    @property
    def pid(self) -> int:
        """The server process id."""
        if self._proc is None:
            raise RuntimeError("the simulated server is not running")
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        return cpu_seconds(self.pid)


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH")
    return f"{_REPO_ROOT}{os.pathsep}{current}" if current else str(_REPO_ROOT)


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    result: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return result[0].strip() if result else ""
