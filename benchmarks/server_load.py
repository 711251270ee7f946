"""Load test of ``polyfuse serve``: hundreds of concurrent streaming fusions on loopback.

What runs where:

* the fake OpenAI-compatible upstream (:class:`polyfuse.testing.FakeOpenAIServer`, paced by a
  latency model) in a thread of this process, so that its ``active`` and ``disconnects``
  counters can be read directly;
* the polyfuse server in its own process (``run_server`` on a generated presets file: a panel
  of N candidate endpoints and a fusor, all on the fake), so that its CPU time is its own;
* the clients: one asyncio loop here, ``--concurrency`` streams at a time.

Faults are injected on purpose: some candidate calls fail with 503, some upstream
connections are dropped mid-answer (the fusion survives both: it fuses the candidates that
remain), and every ``--abandon-every``-th client hangs up after its first token (the server
must cancel that fusion's upstream calls). The run then asserts:

* no request failed beyond those injected faults (every other stream: 200, role chunk first,
  content, one finish chunk, a usage chunk with ``choices: []``, ``[DONE]``);
* no connection leaked: the upstream has no request running, the server has no request in
  flight, and the server counted every hang-up as a 499.

The same client code first streams single calls straight from the fake at the same
concurrency: an ideal fusion takes two such calls back to back (candidates in parallel, then
the fusor), so ``overhead`` = fused p50 / (2 x direct p50), measured in the same run.

Usage::

    .venv/bin/python benchmarks/server_load.py                    # 600 requests, 200 at once
    .venv/bin/python benchmarks/server_load.py --requests 1000 --concurrency 300 --json out.json

Prints a table and a JSON summary; exits 1 if an assertion failed. Not part of pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from polyfuse.testing import FakeOpenAIServer, Fault, LatencyModel, serve

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    """One client request."""

    ok: bool
    abandoned: bool = False
    status: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    problem: str | None = None


@dataclass
class Phase:
    """The outcomes of one phase (direct calls, or fusions through the server)."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def latencies(self) -> list[float]:
        return sorted(o.latency_s for o in self.outcomes if o.ok and not o.abandoned)

    def ttfts(self) -> list[float]:
        return sorted(o.ttft_s for o in self.outcomes if o.ttft_s is not None and not o.abandoned)

    def summary(self) -> dict[str, Any]:
        lat, ttft = self.latencies(), self.ttfts()
        done = [o for o in self.outcomes if not o.abandoned]
        return {
            "requests": len(self.outcomes),
            "completed": sum(o.ok for o in done),
            "errors": sum(not o.ok for o in done),
            "abandoned": sum(o.abandoned for o in self.outcomes),
            "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(len(self.outcomes) / self.wall_s, 1) if self.wall_s else None,
            "latency_p50_ms": _ms(_pct(lat, 50)),
            "latency_p95_ms": _ms(_pct(lat, 95)),
            "latency_max_ms": _ms(lat[-1] if lat else None),
            "ttft_p50_ms": _ms(_pct(ttft, 50)),
            "ttft_p95_ms": _ms(_pct(ttft, 95)),
        }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# ----------------------------------------------------------------------------- client


async def one_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], *, abandon: bool
) -> Outcome:
    """Stream one completion and check every chunk's shape; hang up early if ``abandon``."""
    started = time.perf_counter()
    outcome = Outcome(ok=False, abandoned=abandon)
    saw_role = saw_finish = saw_usage = saw_done = False
    async with client.stream("POST", url, json=body) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            outcome.problem = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
            return outcome
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                saw_done = True
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                outcome.problem = f"error event: {chunk['error'].get('message')}"
                return outcome
            choices = chunk["choices"]
            if not choices:
                saw_usage = chunk.get("usage") is not None
                continue
            delta = choices[0]["delta"]
            if not saw_role:
                if delta.get("role") != "assistant":
                    outcome.problem = "the first chunk has no assistant role"
                    return outcome
                saw_role = True
            if delta.get("content") and outcome.ttft_s is None:
                outcome.ttft_s = time.perf_counter() - started
                if abandon:
                    return outcome  # leaving the `async with` closes the connection
            if choices[0].get("finish_reason"):
                saw_finish = True
    outcome.latency_s = time.perf_counter() - started
    missing = [
        name
        for name, seen in (("role", saw_role), ("finish", saw_finish), ("[DONE]", saw_done))
        if not seen
    ]
    if body.get("stream_options") and not saw_usage:
        missing.append("usage")
    if missing or outcome.ttft_s is None:
        outcome.problem = f"stream incomplete: missing {', '.join(missing) or 'content'}"
        return outcome
    outcome.ok = True
    return outcome


async def run_phase(
    name: str,
    url: str,
    body: dict[str, Any],
    *,
    requests: int,
    concurrency: int,
    abandon_every: int,
) -> Phase:
    """``requests`` streams, ``concurrency`` at a time."""
    phase = Phase(name)
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def task(i: int) -> None:
            abandon = abandon_every > 0 and i % abandon_every == abandon_every - 1
            async with gate:
                try:
                    outcome = await one_stream(client, url, body, abandon=abandon)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    outcome = Outcome(ok=False, problem=f"{type(exc).__name__}: {exc}")
            phase.outcomes.append(outcome)

        started = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(requests)))
        phase.wall_s = time.perf_counter() - started
    return phase


# ----------------------------------------------------------------------------- servers


def write_presets(path: Path, fake_url: str, n: int, concurrency: int) -> None:
    lines: list[str] = []
    for i in range(n):
        lines += [
            f"[endpoints.cand{i}]",
            f'base_url = "{fake_url}"',
            f'model = "cand-{i}"',
            "max_retries = 0",
            f"max_concurrency = {concurrency}",
            "",
        ]
    lines += [
        "[endpoints.fusor]",
        f'base_url = "{fake_url}"',
        'model = "fusor"',
        "max_retries = 0",
        f"max_concurrency = {concurrency}",
        "",
        "[presets.panel]",
        f"pool = [{', '.join(f'{chr(34)}cand{i}{chr(34)}' for i in range(n))}]",
        "n = 1",
        'fusor = "fusor"',
        "",
        "[server]",
        "port = 0",
        f"max_concurrent_requests = {concurrency * 2}",
        "shutdown_timeout_s = 5",
    ]
    path.write_text("\n".join(lines) + "\n")


class PolyfuseProcess:
    """``run_server`` on a presets file, in a child process; reads the port it bound.

    Its log (one line per request at the default ``info`` level) is read continuously, so a
    full pipe never blocks it; the last lines are kept for error reports.
    """

    def __init__(self, config: Path) -> None:
        code = "import sys; from polyfuse.server import run_server; run_server(sys.argv[1])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.log: collections.deque[str] = collections.deque(maxlen=50)
        self._port: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.root_url = self._port.get(timeout=60)
        except queue.Empty:
            self.process.kill()
            raise RuntimeError("polyfuse server did not start:\n" + "".join(self.log)) from None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            if "running on http://" in line:
                self._port.put(line.split("running on ", 1)[1].split()[0])

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    latency = LatencyModel(
        ttft_s=args.ttft_ms / 1000, tokens_per_s=args.tokens_per_s, output_tokens=args.tokens
    )
    fake = FakeOpenAIServer(latency=latency, record=False)
    prompt = [{"role": "user", "content": "Explain why the sky is blue, briefly."}]
    with serve(fake) as upstream, tempfile.TemporaryDirectory() as tmp:
        direct = asyncio.run(
            run_phase(
                "direct call",
                upstream.base_url + "/chat/completions",
                {"model": "cand-0", "messages": prompt, "stream": True},
                requests=args.requests,
                concurrency=args.concurrency,
                abandon_every=0,
            )
        )
        config = Path(tmp) / "presets.toml"
        write_presets(config, upstream.base_url, args.n, args.concurrency)
        server = PolyfuseProcess(config)
        try:
            fake.inject(
                Fault("status", status=503, match_model="cand-1", times=args.faults),
                Fault("drop_connection", match_model=f"cand-{args.n - 1}", times=args.faults),
            )
            disconnects_before = fake.disconnects
            cpu_before = _cpu_seconds(server.process.pid)
            fused = asyncio.run(
                run_phase(
                    "fused via polyfuse serve",
                    server.root_url + "/v1/chat/completions",
                    {
                        "model": "fusion/panel",
                        "messages": prompt,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    },
                    requests=args.requests,
                    concurrency=args.concurrency,
                    abandon_every=args.abandon_every,
                )
            )
            upstream_idle = _wait(lambda: fake.active == 0, 15)
            health = httpx.get(server.root_url + "/health", timeout=10).json()
            server_idle = _wait(
                lambda: httpx.get(server.root_url + "/health", timeout=10).json()["in_flight"] == 0,
                15,
            )
            cpu_s = _cpu_seconds(server.process.pid) - cpu_before
            metrics = httpx.get(server.root_url + "/metrics", timeout=10).text
        finally:
            exit_code = server.stop()
    return _report(
        args,
        direct,
        fused,
        fake,
        disconnects_before,
        upstream_idle,
        server_idle,
        health,
        cpu_s,
        metrics,
        exit_code,
    )


def _report(
    args: argparse.Namespace,
    direct: Phase,
    fused: Phase,
    fake: FakeOpenAIServer,
    disconnects_before: int,
    upstream_idle: bool,
    server_idle: bool,
    health: dict[str, Any],
    cpu_s: float,
    metrics: str,
    exit_code: int,
) -> dict[str, Any]:
    d, f = direct.summary(), fused.summary()
    abandoned = f["abandoned"]
    counted_499 = _metric(metrics, 'polyfuse_requests_total{model="panel",status="499"}')
    counted_200 = _metric(metrics, 'polyfuse_requests_total{model="panel",status="200"}')
    # A client that hangs up after the server has sent the whole answer is a 200, not a 499.
    hangups_after_answer = counted_200 - f["completed"]
    failed_candidates = _metric(metrics, "polyfuse_candidates_failed_total{")
    overhead = (
        round(f["latency_p50_ms"] / (2 * d["latency_p50_ms"]), 3)
        if f["latency_p50_ms"] and d["latency_p50_ms"]
        else None
    )
    checks = {
        "no direct-call errors": d["errors"] == 0,
        "no fused-request errors (faults absorbed)": f["errors"] == 0,
        "every injected fault was hit": not fake.faults,
        "every hang-up cancelled its fusion (499) or came after the answer": (
            counted_499 + hangups_after_answer == abandoned
        ),
        "upstream idle afterwards (no leaked calls)": upstream_idle,
        "server has nothing in flight afterwards": server_idle,
        "server exited cleanly": exit_code == 0,
    }
    problems = sorted({o.problem for o in fused.outcomes + direct.outcomes if o.problem})
    return {
        "config": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "n": args.n,
            "tokens": args.tokens,
            "tokens_per_s": args.tokens_per_s,
            "ttft_ms": args.ttft_ms,
            "faults_per_kind": args.faults,
            "abandon_every": args.abandon_every,
        },
        "direct": d,
        "fused": f,
        "overhead_vs_ideal": overhead,
        "server_cpu_ms_per_request": round(cpu_s * 1000 / max(1, args.requests), 2),
        "candidates_failed": failed_candidates,
        "hangups_cancelling_a_fusion": counted_499,
        "hangups_after_the_answer": hangups_after_answer,
        "upstream_calls_cancelled": fake.disconnects - disconnects_before,
        "in_flight_at_end_of_load": health.get("in_flight"),
        "checks": checks,
        "problems": problems[:10],
        "passed": all(checks.values()),
    }


def _table(report: dict[str, Any]) -> str:
    rows = [
        ("", "direct call", "fused (polyfuse serve)"),
        *(
            (key, str(report["direct"][key]), str(report["fused"][key]))
            for key in (
                "requests",
                "completed",
                "errors",
                "abandoned",
                "wall_s",
                "requests_per_s",
                "latency_p50_ms",
                "latency_p95_ms",
                "ttft_p50_ms",
                "ttft_p95_ms",
            )
        ),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(width[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    lines += [
        "",
        f"overhead vs ideal (fused p50 / 2 x direct p50): {report['overhead_vs_ideal']}",
        f"server CPU per fused request: {report['server_cpu_ms_per_request']} ms",
        f"candidates failed (injected): {report['candidates_failed']:.0f}, "
        f"hang-ups: {report['hangups_cancelling_a_fusion']:.0f} cancelled a fusion in flight "
        f"({report['upstream_calls_cancelled']} upstream calls cancelled), "
        f"{report['hangups_after_the_answer']:.0f} came after the whole answer was sent",
        "",
        *(f"[{'ok' if ok else 'FAIL'}] {name}" for name, ok in report["checks"].items()),
        *(f"  problem: {p}" for p in report["problems"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--n", type=int, default=3, help="candidate endpoints in the panel")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per upstream answer")
    parser.add_argument("--tokens-per-s", type=float, default=200.0)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--faults", type=int, default=20, help="injected faults of each kind")
    parser.add_argument("--abandon-every", type=int, default=25, help="0: no client hangs up")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2 (faults are injected on two candidates)")
    report = run(args)
    print(_table(report))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
