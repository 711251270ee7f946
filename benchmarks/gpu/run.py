"""The GPU serving benchmark: fusion over a continuous-batching server, in one run.

Start ``transformers serve`` on a model directory (or point at any OpenAI-compatible server
with ``--base-url``), then measure, every contender in the same run:

1. direct calls at concurrency 1..64: tokens/s and requests/s (the bound);
2. fusions (polyfuse, and the same fusion through the LangChain and LlamaIndex adapters) at
   N = 3 and 5 with the server capped at the same number of requests in flight as the bound:
   fused requests/s as a fraction of ``direct requests/s / (N + 1)``, with GPU utilisation;
3. time to the first fused token, one fusion at a time, split into its critical path;
4. one request with ``n`` against N separate requests (prefill cost);

writing ``results.json`` after every section (a cut-off run keeps what it measured), then
``tables.md`` and the plots.

Example (on the GPU machine, after ``python -m benchmarks.gpu.model --out /tmp/llama``)::

    python -m benchmarks.gpu.run --model-dir /tmp/llama --out results/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse import OpenAIEndpoint

from .contenders import (
    CONTENDERS,
    Contender,
    ContenderUnavailable,
    DirectCall,
    DirectMix,
    HarnessPeer,
    Setting,
    capture_fusor_messages,
    in_flight,
)
from .gpumon import GpuMonitor, gpu_info
from .load import closed_loop, series
from .nbatch import measure_n_vs_separate
from .server import ServerSettings, TransformersServer

__all__ = ["Plan", "main", "run_benchmark"]


@dataclass
class Plan:
    """What to measure and for how long (the defaults fit one 10-minute device call)."""

    max_tokens: int = 128
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    cap: int = 64
    ns: tuple[int, ...] = (3, 5)
    fusion_contenders: tuple[str, ...] = (
        "polyfuse",
        "langchain-chatfusion",
        "llamaindex-fusionllm",
    )
    peers: tuple[str, ...] = ()
    extra_caps: tuple[int, ...] = ()
    direct_window_s: float = 8.0
    fusion_window_s: float = 15.0
    mix_window_s: float = 10.0
    mix_bound: bool = True
    demand_factor: float = 1.5
    drain_s: float = 2.5
    stagger_s: float = 2.5
    ttft_count: int = 3
    ttft_contenders: tuple[str, ...] = ("polyfuse",)
    n_prompt_words: tuple[int, ...] = (300, 1200)
    n_trials: int = 3
    budget_s: float = 520.0

    def fusion_workers(self, n: int, cap: int) -> int:
        """Concurrent fusions kept running: enough that their calls fill ``cap`` slots.

        A fusion asks for N slots while sampling and 1 while fusing, ``(N + 1) / 2`` on
        average; ``demand_factor`` times the cap in average demand keeps the cap full.
        """
        return max(1, math.ceil(self.demand_factor * cap * 2 / (n + 1)))


@dataclass
class Run:
    """The results being built, the clock, and where they go."""

    out: Path
    plan: Plan
    started: float = field(default_factory=time.perf_counter)
    data: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        """Seconds left of the run's budget."""
        return self.plan.budget_s - (time.perf_counter() - self.started)

    def save(self) -> None:
        """Write ``results.json`` atomically."""
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "results.json.part"
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.out / "results.json")

    def log(self, message: str) -> None:
        """Print a progress line with the elapsed time."""
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", flush=True)


def _make(name: str, setting: Setting) -> Contender:
    if name.startswith("harness:"):
        return HarnessPeer(setting, name.split(":", 1)[1])
    return CONTENDERS[name](setting)


async def _steady(
    run: Run,
    monitor: GpuMonitor,
    contender: Contender,
    *,
    workers: int,
    window_s: float,
    stagger_s: float = 0.0,
    warmup_units: int | None = None,
) -> dict[str, Any]:
    """One closed-loop row: open, measure, close; the row's figures, GPU utilisation, and
    (for fusions over a polyfuse endpoint) the requests it kept in flight at the server."""
    plan = run.plan
    await contender.open()
    samples: list[tuple[float, int]] = []
    gauge = asyncio.ensure_future(_gauge(contender, samples))
    try:
        result = await closed_loop(
            contender.run,
            workers=workers,
            window_s=window_s,
            warmup_units=warmup_units,
            drain_s=plan.drain_s,
            stagger_s=stagger_s,
            max_warmup_s=max(30.0, window_s * 3),
        )
    finally:
        gauge.cancel()
        await asyncio.gather(gauge, return_exceptions=True)
        await contender.aclose()
    row = result.to_json()
    w0, w1 = result.window
    inside = [v for t, v in samples if w0 <= t <= w1]
    if inside:
        row["requests_in_flight_mean"] = round(sum(inside) / len(inside), 1)
        row["requests_in_flight_min"] = min(inside)
    row["gpu"] = monitor.window(*result.window)
    row["window_start_s"] = round(result.window[0] - run.started, 2)
    row["window_end_s"] = round(result.window[1] - run.started, 2)
    return row


async def _gauge(contender: Contender, samples: list[tuple[float, int]]) -> None:
    """Sample the contender's endpoint's requests in flight every 50 ms (if it has one)."""
    endpoint = getattr(contender, "endpoint", None)
    if not isinstance(endpoint, OpenAIEndpoint):
        return
    while True:
        value = in_flight(endpoint)
        if value is not None:
            samples.append((time.perf_counter(), value))
        await asyncio.sleep(0.05)


async def _direct_sweep(run: Run, monitor: GpuMonitor, base: Setting) -> None:
    plan = run.plan
    rows: list[dict[str, Any]] = []
    run.data["direct"] = rows
    for level in plan.levels:
        if run.left() < plan.direct_window_s + 20:
            rows.append({"concurrency": level, "skipped": "time budget"})
            continue
        setting = Setting(**{**base.__dict__, "max_in_flight": level})
        row = await _steady(
            run, monitor, DirectCall(setting), workers=level, window_s=plan.direct_window_s
        )
        row["concurrency"] = level
        rows.append(row)
        run.log(
            f"direct c={level}: {row['littles_law_units_per_s']} req/s, "
            f"{row['completion_tokens_per_s']} tok/s, GPU {row['gpu'].get('util_mean', '-')}%"
        )
        run.save()


def _bound(run: Run, cap: int) -> dict[str, Any] | None:
    for row in run.data.get("direct", []):
        if row.get("concurrency") == cap and "skipped" not in row:
            return row
    return None


async def _fusion_rows(
    run: Run, monitor: GpuMonitor, base: Setting, cap: int, names: tuple[str, ...]
) -> None:
    plan = run.plan
    rows: list[dict[str, Any]] = run.data.setdefault("fusion", [])
    bound = _bound(run, cap)
    for n in plan.ns:
        mix = await _mix_bound(run, monitor, base, cap, n) if plan.mix_bound else None
        for name in names:
            row: dict[str, Any] = {"contender": name, "n": n, "cap": cap}
            if run.left() < plan.fusion_window_s + 40:
                row["skipped"] = "time budget"
                rows.append(row)
                continue
            setting = Setting(**{**base.__dict__, "n": n, "max_in_flight": cap})
            contender = _make(name, setting)
            row["label"] = getattr(contender, "label", name)
            workers = plan.fusion_workers(n, cap)
            try:
                row.update(
                    await _steady(
                        run,
                        monitor,
                        contender,
                        workers=workers,
                        window_s=plan.fusion_window_s,
                        stagger_s=plan.stagger_s,
                        warmup_units=max(1, workers // 2),
                    )
                )
            except ContenderUnavailable as exc:
                row["unavailable"] = str(exc)
            except Exception as exc:  # a broken contender must not stop the others
                row["unavailable"] = f"failed: {type(exc).__name__}: {exc}"[:400]
            if "unavailable" in row:
                rows.append(row)
                run.log(f"{name} N={n}: not run ({row['unavailable']})")
                run.save()
                continue
            if isinstance(contender, HarnessPeer):
                row["label"] = contender.label_override
            _add_fraction(row, bound, n)
            _add_mix_fraction(row, mix)
            rows.append(row)
            run.log(
                f"{name} N={n} cap={cap}: {row['littles_law_units_per_s']} fusions/s, "
                f"fraction {row.get('fraction_of_bound')}, GPU {row['gpu'].get('util_mean', '-')}%"
                f", errors {row['errors']}"
            )
            run.save()


async def _mix_bound(
    run: Run, monitor: GpuMonitor, base: Setting, cap: int, n: int
) -> dict[str, Any] | None:
    """Direct calls at ``cap`` with an N-fusion's request mix (see :class:`DirectMix`)."""
    rows: list[dict[str, Any]] = run.data.setdefault("mix_bound", [])
    for earlier in rows:  # measured once per run for each (N, cap)
        if (earlier["n"], earlier["cap"]) == (n, cap) and "skipped" not in earlier:
            return earlier
    row: dict[str, Any] = {"n": n, "cap": cap}
    rows.append(row)
    if run.left() < run.plan.direct_window_s + 30:
        row["skipped"] = "time budget"
        return None
    setting = Setting(**{**base.__dict__, "n": n, "max_in_flight": cap})
    messages = await capture_fusor_messages(setting)
    row.update(
        await _steady(
            run,
            monitor,
            DirectMix(setting, messages),
            workers=cap,
            window_s=run.plan.mix_window_s,
        )
    )
    row["fusor_prompt_chars"] = sum(len(str(m.get("content", ""))) for m in messages)
    run.log(
        f"direct mix N={n} cap={cap}: {row['littles_law_units_per_s']} req/s, "
        f"{row['prompt_tokens_per_s']} prompt tok/s, GPU {row['gpu'].get('util_mean', '-')}%"
    )
    run.save()
    return row


def _add_mix_fraction(row: dict[str, Any], mix: dict[str, Any] | None) -> None:
    """Fused requests/s against the same request mix sent as independent direct calls."""
    if mix is None or not row.get("units") or not mix.get("units"):
        return
    n = row["n"]
    ideal = mix["littles_law_units_per_s"] / (n + 1)
    row["mix_bound_fusions_per_s"] = round(ideal, 4)
    row["fraction_of_mix_bound"] = round(row["littles_law_units_per_s"] / ideal, 3)


def _add_fraction(row: dict[str, Any], bound: dict[str, Any] | None, n: int) -> None:
    """Fused requests/s against ``direct requests/s / (N + 1)`` at the same cap."""
    if bound is None or not row.get("units") or not bound.get("units"):
        return
    ideal = bound["littles_law_units_per_s"] / (n + 1)
    row["bound_fusions_per_s"] = round(ideal, 4)
    row["fraction_of_bound"] = round(row["littles_law_units_per_s"] / ideal, 3)
    count_ideal = bound["units_per_s"] / (n + 1)
    row["fraction_of_bound_by_count"] = round(row["units_per_s"] / count_ideal, 3)
    if row.get("completion_tokens_per_s") and bound.get("completion_tokens_per_s"):
        row["tokens_fraction_of_bound"] = round(
            row["completion_tokens_per_s"] / bound["completion_tokens_per_s"], 3
        )


async def _ttft(run: Run, monitor: GpuMonitor, base: Setting) -> None:
    plan = run.plan
    rows: list[dict[str, Any]] = []
    run.data["ttft"] = rows
    jobs: list[tuple[str, int]] = [("direct", 1)]
    jobs += [(name, n) for n in plan.ns for name in plan.ttft_contenders]
    for name, n in jobs:
        row: dict[str, Any] = {"contender": name, "n": n if name != "direct" else None}
        if run.left() < 25:
            row["skipped"] = "time budget"
            rows.append(row)
            continue
        contender = _make(name, Setting(**{**base.__dict__, "n": n}))
        row["label"] = contender.label
        started = time.perf_counter()
        try:
            await contender.open()
            try:
                result = await series(contender.run_stream, count=plan.ttft_count)
            finally:
                await contender.aclose()
        except ContenderUnavailable as exc:
            row["unavailable"] = str(exc)
        except Exception as exc:  # a broken contender must not stop the others
            row["unavailable"] = f"failed: {type(exc).__name__}: {exc}"[:400]
        if "unavailable" in row:
            rows.append(row)
            run.log(f"ttft {name} N={n}: not run ({row['unavailable']})")
            continue
        row.update(result.to_json())
        row["gpu"] = monitor.window(started, time.perf_counter())
        rows.append(row)
        run.log(f"ttft {name} N={n}: p50 {row['ttft_p50_s']} s, latency {row['latency_p50_s']} s")
        run.save()


async def _n_vs_separate(run: Run, base: Setting) -> None:
    rows: list[dict[str, Any]] = []
    run.data["n_vs_separate"] = rows
    n = max(run.plan.ns)
    for words in run.plan.n_prompt_words:
        if run.left() < 20:
            rows.append({"prompt_words": words, "skipped": "time budget"})
            continue
        row = await measure_n_vs_separate(
            base.base_url, base.model, n=n, prompt_words=words, trials=run.plan.n_trials
        )
        row["prompt_words"] = words
        rows.append(row)
        run.log(
            f"n vs separate ({row['prompt_tokens']} prompt tokens): one {row['median_s']['one']}s,"
            f" {n} same {row['median_s']['n_same']}s, {n} distinct "
            f"{row['median_s']['n_distinct']}s, n={n} gave {row['choices_returned_for_n']} choices"
        )
        run.save()


async def _learn_n(run: Run, base: Setting) -> None:
    """What polyfuse does on a server that ignores ``n``: one fusion with ``supports_n=None``."""
    from polyfuse import Fuse, Fusion, OpenAIEndpoint, Pool

    endpoint = OpenAIEndpoint(base.base_url, base.model, max_retries=0, read_timeout=600.0)
    n = max(run.plan.ns)
    fusion = Fusion(Pool.repeat(endpoint, n), Fuse(endpoint))
    started = time.perf_counter()
    try:
        result = await fusion.arun(base.prompt, max_tokens=base.max_tokens)
    finally:
        await fusion.aclose()
    run.data["learn_n"] = {
        "n": n,
        "supports_n_after": endpoint.supports_n,
        "candidates_ok": sum(1 for c in result.candidates if c.ok),
        "candidate_calls": result.usage.candidates.calls,
        "latency_s": round(time.perf_counter() - started, 3),
    }
    run.log(f"learn n: {run.data['learn_n']}")
    run.save()


async def _warmup(run: Run, base: Setting) -> None:
    """First requests: CB initialisation and graph capture at small and full batch."""
    t0 = time.perf_counter()
    direct = DirectCall(Setting(**{**base.__dict__, "max_in_flight": run.plan.cap}))
    await direct.open()
    try:
        first = await direct.run()
        t1 = time.perf_counter()
        await asyncio.gather(*(direct.run() for _ in range(run.plan.cap)))
        t2 = time.perf_counter()
        stream = await direct.run_stream()
    finally:
        await direct.aclose()
    run.data["warmup"] = {
        "first_request_s": round(t1 - t0, 2),
        "first_full_batch_s": round(t2 - t1, 2),
        "completion_tokens": first.completion_tokens,
        "stream_completion_tokens": stream.completion_tokens,
    }
    if first.completion_tokens != base.max_tokens:
        run.data["warmup"]["warning"] = (
            f"asked for {base.max_tokens} tokens, got {first.completion_tokens}: "
            "the output length is not fixed"
        )
    run.log(f"warmup: {run.data['warmup']}")
    run.save()


async def _sections(run: Run, monitor: GpuMonitor, base: Setting, only: set[str]) -> None:
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("warmup", lambda: _warmup(run, base)),
        ("direct", lambda: _direct_sweep(run, monitor, base)),
        (
            "fusion",
            lambda: _fusion_rows(run, monitor, base, run.plan.cap, run.plan.fusion_contenders),
        ),
        ("ttft", lambda: _ttft(run, monitor, base)),
        ("n", lambda: _n_vs_separate(run, base)),
        ("learn_n", lambda: _learn_n(run, base)),
        (
            "peers",
            lambda: _fusion_rows(
                run, monitor, base, run.plan.cap, tuple(f"harness:{p}" for p in run.plan.peers)
            ),
        ),
    ]
    steps += [
        (f"fusion@{cap}", (lambda cap=cap: _extra_cap(run, monitor, base, cap)))
        for cap in run.plan.extra_caps
    ]
    errors: dict[str, str] = run.data.setdefault("section_errors", {})
    for name, step in steps:
        if only and name.split("@")[0] not in only:
            continue
        try:
            await step()
        except Exception as exc:  # one broken section must not lose the others
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            run.log(f"section {name} failed: {errors[name]}")
            run.save()


async def _extra_cap(run: Run, monitor: GpuMonitor, base: Setting, cap: int) -> None:
    """polyfuse fusions at a smaller cap, against the direct row of that concurrency."""
    await _fusion_rows(run, monitor, base, cap, ("polyfuse",))


def run_benchmark(
    run: Run,
    base: Setting,
    server: TransformersServer | None,
    only: set[str],
) -> None:
    """Run every section (inside the server's lifetime when one is started here)."""
    run.data["machine"] = {**gpu_info(), "host": platform.node(), "cpus": os.cpu_count()}
    run.data["plan"] = {k: v for k, v in run.plan.__dict__.items()}
    run.data["setting"] = {**base.__dict__}
    with GpuMonitor() as monitor:
        if server is not None:
            run.log("starting transformers serve ...")
            server.start()
            run.data["server"] = {**server.settings.to_json(), "ready_s": server.ready_s}
            run.log(f"server ready in {server.ready_s:.1f}s")
        run.save()
        try:
            asyncio.run(_sections(run, monitor, base, only))
        finally:
            if server is not None:
                server.stop()
        run.data["gpu_trace"] = _trace(run, monitor)
    run.data["elapsed_s"] = round(time.perf_counter() - run.started, 1)
    run.save()


def _trace(run: Run, monitor: GpuMonitor) -> list[tuple[float, float]]:
    """GPU busy % over the whole run, seconds from the run's start (for the plot)."""
    return [(round(t, 2), u) for t, u in monitor.trace(run.started, time.perf_counter())]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model-dir", help="start `transformers serve` on this model directory")
    where.add_argument("--base-url", help="use this running OpenAI-compatible server instead")
    parser.add_argument("--model", help="model name for --base-url (default: the model dir)")
    parser.add_argument("--model-info", type=Path, help="JSON printed by benchmarks.gpu.model")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--no-cuda-graph", action="store_true", help="CB without CUDA graphs")
    parser.add_argument("--cb-num-blocks", type=int, help="KV-cache blocks (CPU smoke tests)")
    parser.add_argument("--cb-max-batch-tokens", type=int)
    parser.add_argument("--cb-max-memory-percent", type=float)
    parser.add_argument("--max-tokens", type=int, default=Plan.max_tokens)
    parser.add_argument("--levels", default=",".join(map(str, Plan.levels)))
    parser.add_argument("--cap", type=int, default=Plan.cap)
    parser.add_argument("--ns", default=",".join(map(str, Plan.ns)))
    parser.add_argument("--contenders", default=",".join(Plan.fusion_contenders))
    parser.add_argument("--peers", default="", help="CPU-harness peers, e.g. openai-gather")
    parser.add_argument("--extra-caps", default="", help="more caps for polyfuse rows")
    parser.add_argument("--ttft-contenders", default=",".join(Plan.ttft_contenders))
    parser.add_argument("--direct-window", type=float, default=Plan.direct_window_s)
    parser.add_argument("--fusion-window", type=float, default=Plan.fusion_window_s)
    parser.add_argument("--mix-window", type=float, default=Plan.mix_window_s)
    parser.add_argument("--no-mix-bound", action="store_true", help="skip the mix bound rows")
    parser.add_argument("--ttft-count", type=int, default=Plan.ttft_count)
    parser.add_argument("--n-prompt-words", default=",".join(map(str, Plan.n_prompt_words)))
    parser.add_argument("--budget", type=float, default=Plan.budget_s, help="seconds")
    parser.add_argument(
        "--only", default="", help="sections: warmup,direct,fusion,ttft,n,learn_n,peers"
    )
    return parser.parse_args(argv)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    args = _parse(argv)
    plan = Plan(
        max_tokens=args.max_tokens,
        levels=_ints(args.levels),
        cap=args.cap,
        ns=_ints(args.ns),
        fusion_contenders=_names(args.contenders),
        peers=_names(args.peers),
        extra_caps=_ints(args.extra_caps),
        ttft_contenders=_names(args.ttft_contenders),
        direct_window_s=args.direct_window,
        fusion_window_s=args.fusion_window,
        mix_window_s=args.mix_window,
        mix_bound=not args.no_mix_bound,
        ttft_count=args.ttft_count,
        n_prompt_words=_ints(args.n_prompt_words),
        budget_s=args.budget,
    )
    run = Run(out=args.out, plan=plan)
    server: TransformersServer | None = None
    if args.model_dir:
        settings = ServerSettings(
            model_dir=str(Path(args.model_dir).resolve()),
            port=args.port,
            cuda_graph=not args.no_cuda_graph,
            num_blocks=args.cb_num_blocks,
            max_batch_tokens=args.cb_max_batch_tokens,
            max_memory_percent=args.cb_max_memory_percent,
        )
        server = TransformersServer(settings, args.out / "server.log")
        base = Setting(server.base_url, server.model, max_tokens=plan.max_tokens)
    else:
        base = Setting(args.base_url, args.model or "default", max_tokens=plan.max_tokens)
        run.data["server"] = {"base_url": args.base_url, "note": "an existing server"}
    if args.model_info is not None and args.model_info.exists():
        run.data["model"] = json.loads(args.model_info.read_text())
    run_benchmark(run, base, server, set(_names(args.only)))
    from .report import write_report

    write_report(run.data, args.out)
    print((args.out / "tables.md").read_text())


if __name__ == "__main__":
    main()
