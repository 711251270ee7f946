"""Start and stop ``transformers serve`` (continuous batching) for the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["ServerError", "ServerSettings", "TransformersServer"]


class ServerError(RuntimeError):
    """The server did not start or died; the message quotes the end of its log."""


@dataclass(frozen=True)
class ServerSettings:
    """How ``transformers serve`` is started (recorded with every table).

    Attributes:
        model_dir: the model directory; requests must name exactly this path as ``model``.
        port: the loopback port.
        continuous_batching: ``--continuous-batching`` (paged attention, one shared batch).
        cuda_graph: ``--cb-use-cuda-graph``; without flash attention CB is ~5x slower and
            erratic without it (see the GPU recipe).
        max_memory_percent: ``--cb-max-memory-percent``, the KV cache's share of memory.
        num_blocks / max_batch_tokens: explicit KV-cache size and batch budget (CPU smoke
            tests keep these small: on a CPU the cache is sized from system RAM).
        extra_args: anything else to pass.
    """

    model_dir: str
    port: int = 8011
    continuous_batching: bool = True
    cuda_graph: bool = True
    max_memory_percent: float | None = None
    num_blocks: int | None = None
    max_batch_tokens: int | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model_dir]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.continuous_batching:
            cmd.append("--continuous-batching")
            if self.cuda_graph:
                cmd.append("--cb-use-cuda-graph")
        if self.max_memory_percent is not None:
            cmd += ["--cb-max-memory-percent", str(self.max_memory_percent)]
        if self.num_blocks is not None:
            cmd += ["--cb-num-blocks", str(self.num_blocks)]
        if self.max_batch_tokens is not None:
            cmd += ["--cb-max-batch-tokens", str(self.max_batch_tokens)]
        return cmd + list(self.extra_args)

    def to_json(self) -> dict[str, Any]:
        """The settings and the exact command line."""
        data = asdict(self)
        data["extra_args"] = list(self.extra_args)
        data["command"] = " ".join(self.command()[1:])
        return data


class TransformersServer:
    """``transformers serve`` in a child process, as a context manager.

    Entering starts it and waits until ``/health`` answers; leaving stops it. Its output goes
    to ``log_path``; the end of that log is quoted when it fails to start.
    """

    def __init__(self, settings: ServerSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. ``http://127.0.0.1:8011/v1``."""
        return f"http://127.0.0.1:{self.settings.port}/v1"

    @property
    def model(self) -> str:
        """The ``model`` value every request must send."""
        return self.settings.model_dir

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the server and wait until it answers ``/health`` (or raise ServerError)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.settings.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        health = f"http://127.0.0.1:{self.settings.port}/health"
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"transformers serve exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if httpx.get(health, timeout=2.0).status_code == 200:
                    self.ready_s = time.perf_counter() - started
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(
            f"transformers serve did not answer /health within {timeout_s:.0f}s: {self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout_s)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log, joined with ' | '."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> TransformersServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
