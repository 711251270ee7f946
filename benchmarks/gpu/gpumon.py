"""GPU facts and utilisation sampling through ``nvidia-smi``.

:class:`GpuMonitor` runs ``nvidia-smi --query-gpu=... -lms PERIOD`` in the background and keeps
every sample with the host's ``time.perf_counter()`` at which it was read, so each contender's
measurement window can be matched to the samples taken during it. Where ``nvidia-smi`` is
missing (a CPU smoke test) the monitor records nothing and says why.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = ["GpuMonitor", "GpuSample", "gpu_info"]

_FIELDS = ("utilization.gpu", "utilization.memory", "memory.used", "power.draw", "clocks.sm")


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading: host time, GPU busy %, memory-controller busy %, MiB used, W, SM MHz."""

    t: float
    util: float
    mem_util: float
    mem_used_mib: float
    power_w: float
    sm_mhz: float


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return float("nan")


def gpu_info() -> dict[str, Any]:
    """GPU model, driver, memory and the software versions, for the results file."""
    info: dict[str, Any] = {}
    smi = shutil.which("nvidia-smi")
    if smi is None:
        info["gpu"] = None
        info["note"] = "nvidia-smi not found: no GPU (a CPU smoke run)"
    else:
        query = "name,driver_version,memory.total,power.limit,clocks.max.sm,pci.bus_id"
        out = subprocess.run(
            [smi, f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        gpus = []
        for line in out.splitlines():
            name, driver, memory, power, clock, bus = (p.strip() for p in line.split(","))
            gpus.append(
                {
                    "name": name,
                    "driver": driver,
                    "memory_total": memory,
                    "power_limit": power,
                    "max_sm_clock": clock,
                    "pci_bus_id": bus,
                }
            )
        info["gpu"] = gpus[0] if gpus else None
        info["gpu_count"] = len(gpus)
    info["versions"] = _versions()
    return info


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md
    import platform

    names = (
        "torch",
        "transformers",
        "tokenizers",
        "httpx",
        "pydantic",
        "fastapi",
        "uvicorn",
        "openai",
        "langchain-core",
        "langchain-openai",
        "llama-index-core",
        "llama-index-llms-openai-like",
    )
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        import polyfuse

        versions["polyfuse"] = polyfuse.__version__
    except ImportError:
        versions["polyfuse"] = None
    try:
        import torch

        versions["cuda"] = torch.version.cuda
    except ImportError:
        versions["cuda"] = None
    return versions


class GpuMonitor:
    """Background ``nvidia-smi`` sampling; use as a context manager around the whole run.

    Args:
        period_ms: sampling period passed to ``nvidia-smi -lms``.
    """

    def __init__(self, period_ms: int = 200) -> None:
        self.period_ms = period_ms
        self.samples: list[GpuSample] = []
        self.available = shutil.which("nvidia-smi") is not None
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start sampling (a no-op without ``nvidia-smi``)."""
        if not self.available:
            return
        self._process = subprocess.Popen(
            [
                "nvidia-smi",
                f"--query-gpu={','.join(_FIELDS)}",
                "--format=csv,noheader,nounits",
                f"-lms={self.period_ms}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, name="gpumon", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            parts = line.split(",")
            if len(parts) < len(_FIELDS):
                continue
            values = [_number(p) for p in parts[: len(_FIELDS)]]
            sample = GpuSample(time.perf_counter(), *values)
            with self._lock:
                self.samples.append(sample)

    def stop(self) -> None:
        """Stop sampling."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._thread is not None:
            self._thread.join(10)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Statistics of the samples read between two ``time.perf_counter()`` instants."""
        if not self.available:
            return {"samples": 0, "note": "no nvidia-smi"}
        with self._lock:
            chosen = [s for s in self.samples if start <= s.t <= end]
        if not chosen:
            return {"samples": 0}
        util = [s.util for s in chosen]
        return {
            "samples": len(chosen),
            "util_mean": round(statistics.fmean(util), 1),
            "util_p10": round(_quantile(util, 0.10), 1),
            "util_min": min(util),
            "mem_util_mean": round(statistics.fmean(s.mem_util for s in chosen), 1),
            "mem_used_mib_max": max(s.mem_used_mib for s in chosen),
            "power_w_mean": round(statistics.fmean(s.power_w for s in chosen), 1),
            "sm_mhz_mean": round(statistics.fmean(s.sm_mhz for s in chosen), 0),
        }

    def trace(self, start: float, end: float) -> list[tuple[float, float]]:
        """``(seconds since start, GPU busy %)`` pairs in a window (for plots)."""
        with self._lock:
            return [(round(s.t - start, 3), s.util) for s in self.samples if start <= s.t <= end]

    def __enter__(self) -> GpuMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
