"""Tables (markdown) and plots (PNG) from a GPU benchmark's ``results.json``.

``python -m benchmarks.gpu.report RESULTS_DIR`` rewrites ``tables.md`` and the plots from the
``results.json`` in that folder (no GPU needed).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ["environment_lines", "tables", "write_report"]


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def environment_lines(data: dict[str, Any]) -> list[str]:
    """GPU, driver, versions, model and server settings, as markdown bullet lines."""
    machine = data.get("machine", {})
    gpu = machine.get("gpu") or {}
    v = machine.get("versions", {})
    model = data.get("model", {})
    server = data.get("server", {})
    plan = data.get("plan", {})
    lines = [
        f"- GPU: {gpu.get('name', 'none')} ({gpu.get('memory_total', '?')}), driver "
        f"{gpu.get('driver', '?')}, CUDA {v.get('cuda')}; {machine.get('cpus')} CPU cores",
        f"- Software: Python {v.get('python')}, torch {v.get('torch')}, transformers "
        f"{v.get('transformers')}, polyfuse {v.get('polyfuse')}, httpx {v.get('httpx')}, "
        f"langchain-core {v.get('langchain-core')}, llama-index-core {v.get('llama-index-core')}",
    ]
    if model:
        spec = model.get("spec", {})
        lines.append(
            f"- Model: random-init Llama, {model.get('parameters', 0) / 1e9:.2f}B parameters "
            f"({spec.get('num_hidden_layers')} layers, hidden {spec.get('hidden_size')}, "
            f"{spec.get('dtype')}), tokenizer trained locally (vocab {model.get('vocab_size')})"
        )
    if server.get("command"):
        lines.append(f"- Server: `transformers {server['command'].split(' ', 3)[-1]}`")
    lines.append(
        f"- Every call generates exactly {plan.get('max_tokens')} tokens (EOS disabled, greedy); "
        "the server ignores `n`, so every fusion sends N separate requests"
    )
    return lines


def _direct_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| concurrency | requests/s | tokens/s | latency p50 (s) | GPU busy (mean %) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['concurrency']} | skipped ({r['skipped']}) | | | |")
            continue
        out.append(
            f"| {r['concurrency']} | {_f(r['littles_law_units_per_s'])} | "
            f"{_f(r.get('completion_tokens_per_s'), 0)} | {_f(r['latency_p50_s'])} | "
            f"{_f(r['gpu'].get('util_mean'), 1)} |"
        )
    return out


def _fusion_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| contender | N | cap | fusions/s | bound: direct ÷ (N+1) | fraction | "
        "bound: same mix ÷ (N+1) | fraction | requests in flight (mean) "
        "| output tokens/s | latency p50 (s) | GPU busy (mean %) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| {r.get('label', r['contender'])} | {r['n']} | {r['cap']} "
        if "skipped" in r or "unavailable" in r:
            why = r.get("skipped") or r.get("unavailable")
            out.append(head + f"| not run: {why} |" + " |" * 9)
            continue
        out.append(
            head + f"| {_f(r['littles_law_units_per_s'])} | {_f(r.get('bound_fusions_per_s'))} "
            f"| {_f(r.get('fraction_of_bound'))} | {_f(r.get('mix_bound_fusions_per_s'))} "
            f"| **{_f(r.get('fraction_of_mix_bound'))}** "
            f"| {_f(r.get('requests_in_flight_mean'), 1)} "
            f"| {_f(r.get('completion_tokens_per_s'), 0)} | {_f(r['latency_p50_s'])} "
            f"| {_f(r['gpu'].get('util_mean'), 1)} | {r['errors']} |"
        )
    return out


def _mix_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| request mix | cap | requests/s | prompt tokens/s | output tokens/s "
        "| latency p50 (s) | GPU busy (mean %) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| N={r['n']}: {r['n']} user prompts + 1 fusor prompt | {r['cap']} "
        if "skipped" in r:
            out.append(head + f"| not run: {r['skipped']} | | | | |")
            continue
        out.append(
            head + f"| {_f(r['littles_law_units_per_s'])} | {_f(r.get('prompt_tokens_per_s'), 0)} "
            f"| {_f(r.get('completion_tokens_per_s'), 0)} | {_f(r['latency_p50_s'])} "
            f"| {_f(r['gpu'].get('util_mean'), 1)} |"
        )
    return out


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ttft_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| contender | N | first token p50 (s) | latency p50 (s) | slowest candidate (s) "
        "| fusor's own TTFT (s) | engine overhead (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| {r.get('label', r['contender'])} | {_f(r.get('n'))} "
        if "skipped" in r or "unavailable" in r:
            out.append(head + f"| not run: {r.get('skipped') or r.get('unavailable')} | | | | |")
            continue
        outcomes = r.get("outcomes", [])
        slowest = _median([o.get("slowest_candidate_s") for o in outcomes])
        fusor = _median([o.get("fusor_ttft_s") for o in outcomes])
        overhead = _median([o.get("overhead_s") for o in outcomes])
        out.append(
            head + f"| {_f(r.get('ttft_p50_s'), 3)} | {_f(r.get('latency_p50_s'), 3)} "
            f"| {_f(slowest, 3)} | {_f(fusor, 3)} "
            f"| {_f(overhead * 1000 if overhead is not None else None, 1)} |"
        )
    return out


def _n_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| prompt tokens | 1 request (s) | N same-prompt requests (s) | N distinct prompts (s) "
        "| 1 request with n=N (s) | choices returned for n=N |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "skipped" in r:
            out.append(f"| ({r['prompt_words']} words) skipped | | | | | |")
            continue
        m = r["median_s"]
        out.append(
            f"| {_f(r['prompt_tokens'], 0)} | {_f(m['one'], 3)} | {_f(m['n_same'], 3)} "
            f"(N={r['n']}) | {_f(m['n_distinct'], 3)} | {_f(m['one_with_n'], 3)} "
            f"| {r['choices_returned_for_n']} |"
        )
    return out


def tables(data: dict[str, Any]) -> str:
    """Every table of the run as markdown, each headed by the run's environment."""
    env = environment_lines(data)
    parts: list[str] = ["## Environment", "", *env, ""]
    if data.get("warmup"):
        parts += [f"Warm-up: `{json.dumps(data['warmup'])}`", ""]
    sections = (
        ("Direct calls (the bound)", data.get("direct"), _direct_table),
        (
            "Direct calls with a fusion's request mix (the bound at the same token budget)",
            data.get("mix_bound"),
            _mix_table,
        ),
        ("Fusions at the same number of requests in flight", data.get("fusion"), _fusion_table),
        ("Time to first fused token (one fusion at a time)", data.get("ttft"), _ttft_table),
        ("One request with n vs N separate requests", data.get("n_vs_separate"), _n_table),
    )
    for title, rows, make in sections:
        if rows:
            parts += [f"## {title}", "", *make(rows), ""]
    if data.get("learn_n"):
        parts += [f"polyfuse learning `n` on this server: `{json.dumps(data['learn_n'])}`", ""]
    if data.get("section_errors"):
        parts += [f"Section errors: `{json.dumps(data['section_errors'])}`", ""]
    return "\n".join(parts)


def write_report(data: dict[str, Any], out: Path) -> list[Path]:
    """Write ``tables.md`` and the plots into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "tables.md"]
    written[0].write_text(tables(data))
    try:
        from .plots import make_plots
    except ImportError as exc:  # matplotlib missing: tables only
        print(f"no plots: {exc}")
        return written
    return written + make_plots(data, out)


def main(argv: list[str] | None = None) -> None:
    """Rewrite tables and plots from ``RESULTS_DIR/results.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    args = parser.parse_args(argv)
    data = json.loads((args.results_dir / "results.json").read_text())
    for path in write_report(data, args.results_dir):
        print(path)


if __name__ == "__main__":
    main()
