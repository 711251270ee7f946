"""The parent side: start the simulated server, run each measurement in a worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .simserver import SimServers
from .workload import Workload

__all__ = ["RESULT_PREFIX", "run_worker"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "RESULT "
"""What starts the line on which a worker prints its result."""


def run_worker(
    contender: str,
    workload: Workload,
    mode: str,
    params: dict[str, Any],
    *,
    timeout_s: float,
    servers: SimServers | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh worker process and return its result dict.

    With ``servers``, the simulated server's CPU used during the run is added as
    ``server_cpu_s``. A worker that outlives ``timeout_s`` is killed and reported as
    ``{"error": "timeout ..."}``.
    """
    job = {"contender": contender, "workload": workload.to_json(), "mode": mode, "params": params}
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    server_cpu0 = servers.cpu_seconds() if servers is not None else None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.harness.worker", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=_REPO_ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: the worker ran past {timeout_s:.0f}s and was killed"}
    result: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            break
    if result is None:
        tail = proc.stderr.strip().splitlines()[-5:]
        result = {"error": f"worker exited {proc.returncode} without a result: {' | '.join(tail)}"}
    elif "error" in result and proc.stderr.strip():
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
    if servers is not None and server_cpu0 is not None:
        result["server_cpu_s"] = servers.cpu_seconds() - server_cpu0
    return result


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH")
    return f"{_REPO_ROOT}{os.pathsep}{current}" if current else str(_REPO_ROOT)
