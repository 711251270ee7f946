"""Report plots with matplotlib (Agg backend), returned as SVG text to embed in the HTML.

SVG rather than PNG: it stays sharp at any zoom and is text, so the report remains one
self-contained file. Labels are strategy/model names, which matplotlib draws as text paths;
the SVG is embedded as an ``<img>`` data URI, so nothing in it can run in the page.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

from .analysis import StrategyCost, TaskResult
from .stats import Estimate

__all__ = [
    "adaptive_curve_plot",
    "quality_plot",
    "quality_vs_cost_plot",
    "svg_data_uri",
    "sweep_plot",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def svg_data_uri(svg: str) -> str:
    """An ``<img src>`` value holding the SVG."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def quality_plot(title: str, estimates: Mapping[str, Estimate], metric: str) -> str:
    """Horizontal bars: each strategy's (or model's) mean with its CI, best at the top."""
    plt = _pyplot()
    names = sorted((n for n in estimates if estimates[n].n), key=lambda n: estimates[n].mean)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    means = [100 * estimates[n].mean for n in names]
    lows = [100 * (estimates[n].mean - estimates[n].low) for n in names]
    highs = [100 * (estimates[n].high - estimates[n].mean) for n in names]
    ax.barh(names, means, xerr=[lows, highs], color="#4c78a8", ecolor="#222", capsize=4)
    for y, (mean, high) in enumerate(zip(means, highs, strict=True)):
        ax.text(mean + high + 1, y, f"{mean:.1f}", va="center", ha="left", fontsize=8)
    ax.set_xlabel(f"{metric} (%), 95% CI")
    ax.set_title(title)
    ax.set_xlim(0, 112)
    return _svg(fig)


def quality_vs_cost_plot(
    title: str,
    result: TaskResult,
    costs: Mapping[str, StrategyCost],
    frontier: Sequence[str],
    *,
    dollars: bool = False,
) -> str:
    """Quality (with CI) against mean cost per prompt; the frontier joined by a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in result.strategies:
        estimate = result.estimates[name]
        if not estimate.n:
            continue
        cost = costs[name].cost_usd if dollars else result.spend(name)
        if cost is None:
            continue
        y = 100 * estimate.mean
        ax.errorbar(
            [cost],
            [y],
            yerr=[[y - 100 * estimate.low], [100 * estimate.high - y]],
            fmt="o",
            color="#e45756" if name in frontier else "#4c78a8",
            capsize=4,
        )
        ax.annotate(name, (cost, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    line = [
        (
            (costs[n].cost_usd or 0.0) if dollars else result.spend(n),
            100 * result.estimates[n].mean,
        )
        for n in frontier
    ]
    if len(line) > 1:
        ax.plot([x for x, _ in line], [y for _, y in line], "--", color="#e45756", lw=1)
    if result.ceiling is not None:  # what the candidates allowed: the best one per prompt
        top = result.ceiling.estimate
        ax.axhspan(100 * top.low, 100 * top.high, color="#54a24b", alpha=0.12, lw=0)
        ax.axhline(
            100 * top.mean,
            color="#54a24b",
            lw=1,
            ls=":",
            label="ceiling (best candidate)",
            gid="ceiling",
        )
        ax.legend(loc="lower right", fontsize=8)
    unit = "$" if dollars else result.cost_unit
    ax.set_xlabel(f"mean {unit} per prompt (pool included)")
    ax.set_ylabel(f"{result.metric} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _svg(fig)


def sweep_plot(
    title: str,
    sizes: Sequence[int],
    vote: Sequence[Estimate],
    oracle: Sequence[float],
    best: Sequence[float],
) -> str:
    """Majority vote (with CI) by panel size, against the best member and "some member right"."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    means = [100 * e.mean for e in vote]
    ax.errorbar(
        list(sizes),
        means,
        yerr=[
            [m - 100 * e.low for m, e in zip(means, vote, strict=True)],
            [100 * e.high - m for m, e in zip(means, vote, strict=True)],
        ],
        fmt="o-",
        color="#4c78a8",
        capsize=3,
        label="majority vote (95% CI)",
    )
    ax.plot(list(sizes), [100 * b for b in best], "s--", color="#999", label="best member")
    ax.plot(
        list(sizes), [100 * o for o in oracle], "^:", color="#e45756", label="some member right"
    )
    ax.set_xlabel("panel size")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(list(sizes))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def adaptive_curve_plot(
    title: str,
    labels: Sequence[str],
    calls: Sequence[float],
    accuracy: Sequence[Estimate],
    full: int,
) -> str:
    """Accuracy (with CI) against candidate calls per prompt, one point per stopping threshold;
    ``labels[full]`` (the full vote) is drawn as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    points = [i for i in range(len(labels)) if i != full]
    xs = [calls[i] for i in points]
    ys = [100 * accuracy[i].mean for i in points]
    ax.errorbar(
        xs,
        ys,
        yerr=[
            [y - 100 * accuracy[i].low for i, y in zip(points, ys, strict=True)],
            [100 * accuracy[i].high - y for i, y in zip(points, ys, strict=True)],
        ],
        fmt="o-",
        color="#4c78a8",
        capsize=3,
        label="adaptive stopping (95% CI)",
    )
    for i, x, y in zip(points, xs, ys, strict=True):
        ax.annotate(labels[i], (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.axhline(
        100 * accuracy[full].mean,
        color="#999",
        linestyle="--",
        label=f"{labels[full]} ({calls[full]:.1f} calls)",
    )
    ax.set_xlabel("candidate calls per prompt")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)
