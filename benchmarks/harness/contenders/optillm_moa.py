"""optillm's ``moa`` approach: its proxy server in front of the endpoint, called over HTTP.

optillm is a Flask proxy, so the fusion runs in *its* process: this contender starts it
(``optillm --base-url <endpoint> --approach moa``) from the executable named by the
``POLYFUSE_BENCH_OPTILLM`` environment variable (default ``/tmp/optillm-venv/bin/optillm``;
install it in a throwaway venv: ``python -m venv /tmp/optillm-venv &&
/tmp/optillm-venv/bin/pip install optillm``), sends each fusion as one request through the
raw-socket client, and reports the proxy's CPU and memory as its own (``helper_pids``).

Its algorithm differs from the others: 3 candidates in one ``n=3`` call (a sequential loop of
3 calls where ``n`` is refused), then a critique call, then a final call: three calls in a row,
so its critical-path ideal is 3 calls, not 2 (``sequential_calls``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from .base import Contender, ContenderUnavailable
from .raw_socket import RawHTTP

__all__ = ["OptiLLMContender", "optillm_executable"]

_DEFAULT = "/tmp/optillm-venv/bin/optillm"


def optillm_executable() -> str | None:
    """The optillm executable to run, or None when it is not installed."""
    path = os.environ.get("POLYFUSE_BENCH_OPTILLM", _DEFAULT)
    return path if Path(path).is_file() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OptiLLMContender(Contender):
    """optillm ``moa`` (3 candidates, critique, final) through its proxy."""

    name: ClassVar[str] = "optillm-moa"
    label: ClassVar[str] = "optillm moa (proxy)"
    sequential_calls: ClassVar[int] = 3
    startup_timeout_s: ClassVar[float] = 90.0

    async def open(self) -> None:
        executable = optillm_executable()
        if executable is None:
            raise ContenderUnavailable(
                "optillm is not installed; python -m venv /tmp/optillm-venv && "
                "/tmp/optillm-venv/bin/pip install optillm (or set POLYFUSE_BENCH_OPTILLM)"
            )
        w = self.workload
        if not w.one_endpoint:
            raise ContenderUnavailable("optillm moa samples one endpoint only")
        port = _free_port()
        env = {
            **os.environ,
            "OPENAI_API_KEY": w.api_key,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.proc = subprocess.Popen(
            [executable, "--base-url", w.fusor_url, "--port", str(port), "--log", "warning"],
            env=env,
            cwd="/tmp",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = RawHTTP(f"http://127.0.0.1:{port}/v1", w.api_key)
        await self._wait_ready(port)
        self.body = json.dumps(
            {
                "model": f"moa-{w.model}",
                "messages": [{"role": "user", "content": w.prompt}],
                "max_tokens": w.max_tokens,
            }
        ).encode()

    async def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContenderUnavailable(f"optillm exited with {self.proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            writer.close()
            return
        raise ContenderUnavailable(f"optillm did not listen within {self.startup_timeout_s}s")

    def helper_pids(self) -> list[int]:
        return [self.proc.pid]

    async def fuse(self) -> str:
        data = await self.client.post(self.body)
        return data["choices"][0]["message"]["content"] or ""

    async def aclose(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
