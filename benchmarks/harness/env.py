"""Where a figure runs: the simulated server (started here) or any OpenAI-compatible URL.

Every figure script takes the same options (:func:`add_arguments`) and opens an :class:`Env`
with :func:`open_env`: with ``--base-url`` no server is started and the critical-path ideal is
calibrated with the raw-socket client (one candidate call + one fusor call, medians), so the
same contenders and figures run against a GPU server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .contenders import CONTENDERS, ContenderUnavailable, optillm_executable
from .contenders.raw_socket import RawHTTP
from .drive import stamper
from .simserver import ServerSpec, SimServers
from .stats import percentile
from .workload import Workload

__all__ = ["DEFAULT_CONTENDERS", "Env", "add_arguments", "open_env"]

DEFAULT_CONTENDERS = (
    "raw",
    "polyfuse",
    "polyfuse-fanout",
    "openai-gather",
    "langchain",
    "llamaindex",
    "optillm-moa",
)


@dataclass
class Env:
    """A place to run contenders: the workload, the ideal call time and the server handle."""

    workload: Workload
    call_s: float
    """Seconds one call takes on an idle server (the simulated model, or calibrated)."""
    fusor_call_s: float
    """Seconds one fusor call takes (equal to ``call_s`` on the simulated server)."""
    ttft_s: float
    """The server's time to first token (streamed fusor)."""
    contenders: list[str]
    servers: SimServers | None = None
    spec: ServerSpec | None = None
    notes: list[str] = field(default_factory=list)

    def ideal_s(self, contender: str) -> float:
        """The critical-path ideal of one fusion by ``contender``: its calls back to back."""
        calls = CONTENDERS[contender].sequential_calls
        return self.call_s + (calls - 1) * self.fusor_call_s

    def describe(self) -> dict[str, Any]:
        """What the run was measured on (goes into every result file)."""
        return {
            "server": asdict(self.spec) if self.spec is not None else "external",
            "base_url": None if self.spec is not None else self.workload.fusor_url,
            "n": self.workload.n,
            "call_s": self.call_s,
            "fusor_call_s": self.fusor_call_s,
            "ttft_s": self.ttft_s,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {_cpus()} CPUs",
            "load_avg_at_start": _loadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "notes": self.notes,
        }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _loadavg() -> list[float]:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every figure script shares."""
    parser.add_argument(
        "--base-url",
        help="measure against this OpenAI-compatible server instead of starting the simulated one",
    )
    parser.add_argument("--model", default="sim-model", help="model name sent in requests")
    parser.add_argument("--api-key", default="sk-benchmark")
    parser.add_argument("--n", type=int, default=5, help="candidates per fusion")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help="comma-separated, from: " + ", ".join(sorted(CONTENDERS)),
    )
    parser.add_argument("--ttft", type=float, default=0.050, help="simulated time to first token")
    parser.add_argument("--tokens-per-s", type=float, default=500.0, help="simulated speed")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per simulated answer")
    parser.add_argument(
        "--jitter", type=float, default=0.0, help="simulated per-request jitter, 0..1 (relative)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the simulated jitter")
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")


def _contenders(args: argparse.Namespace, notes: list[str]) -> list[str]:
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; known: {sorted(CONTENDERS)}")
    if "optillm-moa" in names and optillm_executable() is None:
        names.remove("optillm-moa")
        notes.append(
            "optillm-moa skipped: optillm is not installed (python -m venv /tmp/optillm-venv && "
            "/tmp/optillm-venv/bin/pip install optillm)"
        )
    return names


@contextlib.contextmanager
def open_env(args: argparse.Namespace, *specs: ServerSpec) -> Iterator[Env]:
    """Start the simulated server(s) (``specs``, default one from the options) or calibrate
    against ``--base-url``; yield the :class:`Env`. With several specs, the workload's
    candidates and fusor go to the first one; figures build their own workloads from
    ``env.servers.base_urls``."""
    notes: list[str] = []
    contenders = _contenders(args, notes)
    common = {"model": args.model, "api_key": args.api_key}
    if args.base_url:
        workload = Workload.single(args.base_url.rstrip("/"), args.n, **common)
        call_s, fusor_s, ttft_s = asyncio.run(_calibrate(workload))
        notes.append(f"external server; ideal calibrated: call {call_s:.4f}s, fusor {fusor_s:.4f}s")
        yield Env(workload, call_s, fusor_s, ttft_s, contenders, notes=notes)
        return
    if args.jitter:
        notes.append(
            f"jitter {args.jitter}: the ideal assumes none, so with N parallel calls the "
            "expected critical path is longer than the ideal shown"
        )
    spec = ServerSpec(
        ttft_s=args.ttft,
        tokens_per_s=args.tokens_per_s,
        output_tokens=args.tokens,
        jitter=args.jitter,
        seed=args.seed,
        model=args.model,
    )
    with SimServers(list(specs) or [spec]) as servers:
        workload = Workload.single(servers.base_urls[0], args.n, **common)
        first = specs[0] if specs else spec
        yield Env(
            workload,
            first.call_s,
            first.call_s,
            first.ttft_s,
            contenders,
            servers=servers,
            spec=first,
            notes=notes,
        )


async def _calibrate(workload: Workload, samples: int = 7) -> tuple[float, float, float]:
    """Medians of a candidate call, a fusor call and a streamed fusor's time to first token,
    measured with the raw-socket client one at a time."""
    client = RawHTTP(workload.fusor_url, workload.api_key)
    head = {"model": workload.model, "max_tokens": workload.max_tokens}
    candidate = dict(head, temperature=workload.temperature)
    candidate["messages"] = [{"role": "user", "content": workload.prompt}]
    try:
        data = await client.post(json.dumps(candidate).encode())
        text = data["choices"][0]["message"]["content"] or ""
        fusor = dict(head, messages=workload.fusor_messages([text] * workload.n))
        calls: list[float] = []
        fusors: list[float] = []
        ttfts: list[float] = []
        for _ in range(samples):
            started = time.perf_counter()
            await client.post(json.dumps(candidate).encode())
            calls.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.post(json.dumps(fusor).encode())
            fusors.append(time.perf_counter() - started)
            first: list[float] = []
            started = time.perf_counter()
            await client.stream(
                json.dumps(dict(fusor, stream=True)).encode(),
                stamper(first, started),
            )
            ttfts.append(first[0] if first else time.perf_counter() - started)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ContenderUnavailable(
            f"calibration against {workload.fusor_url} failed: {exc}"
        ) from exc
    finally:
        client.close()
    return (
        percentile(calls, 50) or 0.0,
        percentile(fusors, 50) or 0.0,
        percentile(ttfts, 50) or 0.0,
    )
