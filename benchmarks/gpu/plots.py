"""PNG plots of a GPU benchmark run (matplotlib, headless)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["make_plots"]


def _ok(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [r for r in rows or [] if "skipped" not in r and "unavailable" not in r]


def _throughput(data: dict[str, Any], path: Path) -> Path | None:
    direct = _ok(data.get("direct"))
    fusion = _ok(data.get("fusion"))
    if not direct:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    levels = [r["concurrency"] for r in direct]
    tokens = [r.get("completion_tokens_per_s") or 0 for r in direct]
    rps = [r["littles_law_units_per_s"] for r in direct]
    left.plot(levels, tokens, "o-", color="tab:blue", label="tokens/s")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent direct calls")
    left.set_ylabel("generated tokens/s", color="tab:blue")
    twin = left.twinx()
    twin.plot(levels, rps, "s--", color="tab:orange", label="requests/s")
    twin.set_ylabel("requests/s", color="tab:orange")
    left.set_title("Direct calls: the server-bound rate")
    left.grid(alpha=0.3)
    if fusion:
        labels = [f"{r.get('label', r['contender'])}\nN={r['n']}, cap {r['cap']}" for r in fusion]
        values = [r.get("fraction_of_mix_bound") or r.get("fraction_of_bound") or 0 for r in fusion]
        colors = ["tab:green" if v >= 0.9 else "tab:red" for v in values]
        bars = right.bar(range(len(values)), values, color=colors)
        right.bar_label(bars, fmt="%.2f")
        right.axhline(0.9, color="k", ls="--", lw=1, label="target 0.9")
        right.axhline(1.0, color="grey", ls=":", lw=1)
        right.set_xticks(range(len(values)), labels, fontsize=7, rotation=30, ha="right")
        right.set_ylim(0, max(1.15, max(values) + 0.1))
        right.set_ylabel("fused requests/s ÷ bound")
        right.set_title("Fusions vs the same request mix sent as direct calls")
        right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gpu_trace(data: dict[str, Any], path: Path) -> Path | None:
    trace = data.get("gpu_trace") or []
    if not trace:
        return None
    fig, ax = plt.subplots(figsize=(12, 3.8))
    ax.plot([t for t, _ in trace], [u for _, u in trace], lw=0.8, color="tab:blue")
    rows = [("direct c=" + str(r["concurrency"]), r) for r in _ok(data.get("direct"))]
    rows += [(f"mix N={r['n']}", r) for r in _ok(data.get("mix_bound"))]
    rows += [(f"{r['contender']} N={r['n']}", r) for r in _ok(data.get("fusion"))]
    for i, (label, r) in enumerate(rows):
        if "window_start_s" not in r:
            continue
        ax.axvspan(r["window_start_s"], r["window_end_s"], alpha=0.12, color=f"C{i % 10}")
        ax.text(
            (r["window_start_s"] + r["window_end_s"]) / 2,
            103 + (i % 3) * 4,
            label,
            ha="center",
            fontsize=6,
        )
    ax.set_ylim(0, 116)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("GPU busy % (nvidia-smi)")
    ax.set_title("GPU utilisation; shaded: measurement windows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ttft(data: dict[str, Any], path: Path) -> Path | None:
    rows = _ok(data.get("ttft"))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    labels: list[str] = []
    seen = False
    for i, r in enumerate(rows):
        outcomes = r.get("outcomes") or []
        name = str(r.get("label", r["contender"])).replace(" ", "\n", 1)
        labels.append(name + (f"\nN={r['n']}" if r.get("n") else ""))
        if r["contender"] == "direct":
            ax.bar(i, r.get("ttft_p50_s") or 0, color="tab:gray")
            continue
        if not any(o.get("slowest_candidate_s") for o in outcomes):
            ax.bar(
                i,
                r.get("ttft_p50_s") or 0,
                color="tab:purple",
                label=None if seen else "total (no split)",
            )
            seen = True
            continue
        slowest = statistics.median(o.get("slowest_candidate_s") or 0 for o in outcomes)
        fusor = statistics.median(o.get("fusor_ttft_s") or 0 for o in outcomes)
        total = r.get("ttft_p50_s") or 0
        rest = max(0.0, total - slowest - fusor)
        first = i == 1
        ax.bar(i, slowest, color="tab:blue", label="slowest candidate" if first else None)
        ax.bar(i, fusor, bottom=slowest, color="tab:orange", label="fusor TTFT" if first else None)
        ax.bar(i, rest, bottom=slowest + fusor, color="tab:red", label="engine" if first else None)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("seconds to first answer token (p50)")
    ax.set_title("Time to first token: direct call vs fused answer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(data: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots that the data allows; returns their paths."""
    made = [
        _throughput(data, out / "throughput.png"),
        _gpu_trace(data, out / "gpu_util.png"),
        _ttft(data, out / "ttft.png"),
    ]
    return [p for p in made if p is not None]
