"""The eval report: one self-contained HTML file (tables, embedded SVG plots, every model- or
user-provided string escaped) and a markdown summary, both ending with the recommendations.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .adaptive_curve import FULL_VOTE, CurvePoint
from .analysis import EvalAnalysis, TaskResult, points, signed_points
from .plots import (
    adaptive_curve_plot,
    quality_plot,
    quality_vs_cost_plot,
    svg_data_uri,
    sweep_plot,
)
from .stats import Estimate
from .sweep import PanelResult

__all__ = ["ReportContext", "format_p", "render_html", "render_markdown"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
tr.frontier td:first-child{font-weight:600}
code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.5em 1em;margin:.4em 0}
.warn{color:#a40}
img{max-width:100%}
"""


@dataclass
class ReportContext:
    """What the report says about how it was made."""

    title: str = "polyfuse eval"
    command: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    sweep: list[PanelResult] | None = None
    notes: list[str] = field(default_factory=list)
    adaptive_curve: list[CurvePoint] | None = None
    curve_orders: int = 0


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(estimate: Estimate) -> str:
    if not estimate.n or math.isnan(estimate.mean):
        return "–"
    return points(estimate.mean)


def _ci(estimate: Estimate) -> str:
    if not estimate.n or math.isnan(estimate.low):
        return "–"
    return f"{points(estimate.low)} – {points(estimate.high)}"


def _usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.6f}"


def format_p(p: float) -> str:
    """A bootstrap p-value for display (``<0.001`` below the resampling's resolution)."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _strategy_rows(result: TaskResult) -> list[list[str]]:
    on_frontier = {p.strategy for p in result.frontier if p.on_frontier}
    rows: list[list[str]] = []
    for name in sorted(result.strategies, key=lambda s: -(result.estimates[s].mean or 0)):
        est, cost = result.estimates[name], result.costs[name]
        rows.append(
            [
                name + (" ★" if name in on_frontier else ""),
                _pct(est),
                _ci(est),
                str(est.n),
                str(result.failed[name]),
                str(result.unscored[name]),
                str(result.fallbacks.get(name, 0)),
                f"{cost.tokens:,.0f}" if cost.tokens_known else "–",
                f"{cost.calls:.1f}",
                "–" if cost.latency_s is None else f"{cost.latency_s:.2f}",
                _usd(cost.cost_usd),
            ]
        )
    return rows


_STRATEGY_HEAD = [
    "strategy",
    "quality %",
    "95% CI",
    "n",
    "failed",
    "no verdict",
    "fell back",
    "tokens/prompt",
    "calls/prompt",
    "latency s",
    "$/prompt",
]


def _comparison_rows(result: TaskResult) -> list[list[str]]:
    rows: list[list[str]] = []
    for stored in result.comparisons:
        # The better strategy first, so that differences read as gains.
        better_first = result.estimates[stored.a].mean >= result.estimates[stored.b].mean
        c = stored if better_first else result.comparison(stored.b, stored.a) or stored
        rows.append(
            [
                f"{c.a} − {c.b}",
                f"{100 * c.diff.mean:+.1f}",
                f"{points(c.diff.low)} – {points(c.diff.high)}",
                format_p(c.p_value),
                "yes" if c.significant else "no",
                str(c.diff.n),
            ]
        )
    return rows


_COMPARISON_HEAD = ["difference", "pts", "95% CI", "p", "significant", "paired prompts"]


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in head) + " |"]
    lines.append("|" + "|".join("---" for _ in head) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _adaptive_rows(result: TaskResult) -> list[list[str]]:
    """Per adaptive strategy: samples used of N, calls saved, why sampling stopped, shortcuts,
    and its quality against the same strategy over the full pool (paired, same prompts)."""
    rows: list[list[str]] = []
    for name, stats in result.adaptive.items():
        full = name.removeprefix("adaptive-")
        diff = result.comparison(name, full) if full in result.estimates else None
        rows.append(
            [
                name,
                f"{stats.samples:.2f} of {stats.max_samples:.2f}",
                f"{100 * stats.saved_share:.1f}%",
                ", ".join(f"{k} {v}" for k, v in stats.stop_reasons.items()),
                str(stats.shortcuts),
                "–" if diff is None else f"{full}: {signed_points(diff.diff.mean)}",
                "–" if diff is None else f"{points(diff.diff.low)} – {points(diff.diff.high)}",
            ]
        )
    return rows


_ADAPTIVE_HEAD = [
    "strategy",
    "samples used",
    "fewer candidate calls",
    "stopped because",
    "consensus shortcuts",
    "Δ quality vs full pool (pts)",
    "95% CI",
]


def _model_rows(result: TaskResult) -> list[list[str]]:
    return [
        [model, _pct(est), _ci(est), str(est.n)]
        for model, est in sorted(result.models.items(), key=lambda kv: -kv[1].mean)
    ]


def _ceiling_title(result: TaskResult) -> str:
    ceiling = result.ceiling
    assert ceiling is not None
    what = "some candidate right" if result.metric == "accuracy" else "the best candidate's score"
    return (
        f"Ceiling: {what} on {_pct(ceiling.estimate)}% of prompts (95% CI "
        f"{_ci(ceiling.estimate)}, {ceiling.candidates:.1f} candidates scored per prompt)"
    )


def _ceiling_rows(result: TaskResult) -> list[list[str]]:
    """Each strategy's paired gap to the ceiling, the smallest first."""
    ceiling = result.ceiling
    assert ceiling is not None
    rows: list[list[str]] = []
    for name, gap in sorted(ceiling.gaps.items(), key=lambda kv: -kv[1].diff.mean):
        mean = ceiling.estimate.mean
        share = "–" if not mean else f"{100 * result.estimates[name].mean / mean:.0f}%"
        rows.append(
            [
                name,
                signed_points(gap.diff.mean),
                f"{points(gap.diff.low)} – {points(gap.diff.high)}",
                share,
                str(gap.diff.n),
            ]
        )
    return rows


_CEILING_HEAD = ["strategy", "gap to ceiling (pts)", "95% CI", "of the ceiling", "paired prompts"]


def _language_rows(result: TaskResult) -> list[list[str]]:
    rows: list[list[str]] = []
    for language, estimates in result.languages.items():
        for name, est in estimates.items():
            rows.append([language, name, _pct(est), _ci(est), str(est.n)])
    return rows


def _sweep_rows(sweep: Sequence[PanelResult]) -> list[list[str]]:
    return [
        [
            str(r.size),
            _pct(r.vote),
            _ci(r.vote),
            f"{100 * r.best_single:.1f}",
            f"{100 * r.oracle:.1f}",
            ", ".join(r.panel),
        ]
        for r in sweep
    ]


_SWEEP_HEAD = ["panel size", "vote %", "95% CI", "best member %", "some member right %", "panel"]


def _curve_rows(curve: Sequence[CurvePoint]) -> list[list[str]]:
    rows: list[list[str]] = []
    for p in curve:
        delta = p.delta
        rows.append(
            [
                p.label,
                _pct(p.accuracy),
                _ci(p.accuracy),
                "–" if delta is None else f"{(round(100 * delta.mean, 2) or 0.0):+.2f}",
                "–" if delta is None else f"{100 * delta.low:+.2f} – {100 * delta.high:+.2f}",
                f"{p.calls:.2f} of {p.max_calls:.2f}",
                f"{100 * p.saved_share:.1f}%",
            ]
        )
    return rows


_CURVE_HEAD = [
    "stopping",
    "accuracy %",
    "95% CI",
    "Δ vs full vote (pts)",
    "95% CI",
    "candidate calls",
    "fewer calls",
]


def _curve_title(context: ReportContext) -> str:
    return (
        "Adaptive stopping: accuracy vs candidate calls "
        f"({context.curve_orders} random orders per prompt)"
    )


def _judge_lines(analysis: EvalAnalysis) -> list[str]:
    j = analysis.judge
    if not j.replies:
        return []
    lines = [
        f"judge replies: {j.replies} ({j.tokens:,} tokens); unparseable: {j.unparseable} "
        f"(not scored, never counted as ties); failed calls: {j.failed_calls}",
    ]
    share = j.position_a_share
    if share is not None:
        lines.append(
            f"position bias: decisive verdicts for position A {100 * share:.1f}% "
            f"(A {j.position['A']}, B {j.position['B']}, tie {j.position['tie']}; 50% = none)"
        )
    if j.pairs:
        lines.append(
            f"order consistency: {j.consistent_pairs} of {j.pairs} answer pairs got the same "
            f"verdict in both orders ({100 * j.consistent_pairs / j.pairs:.1f}%)"
        )
    return lines


def _plots(result: TaskResult) -> list[str]:
    frontier = [p.strategy for p in result.frontier if p.on_frontier]
    images = [
        quality_plot(f"{result.task}: {result.metric}", result.estimates, result.metric),
        quality_vs_cost_plot(
            f"{result.task}: quality vs {result.cost_unit}", result, result.costs, frontier
        ),
    ]
    if result.frontier_usd is not None:
        usd_frontier = [p.strategy for p in result.frontier_usd if p.on_frontier]
        images.append(
            quality_vs_cost_plot(
                f"{result.task}: quality vs $", result, result.costs, usd_frontier, dollars=True
            )
        )
    if result.models:
        images.append(
            quality_plot(f"{result.task}: candidates by model", result.models, result.metric)
        )
    return images


def _html_task(result: TaskResult) -> list[str]:
    """One task's section: strategies, plots, adaptive sampling, differences, ceiling, models."""
    parts = [
        f"<h2>{_e(result.task)} — {_e(result.metric)} ({result.prompts} prompts)</h2>",
        "<p>Quality in %, paired bootstrap 95% CIs over prompts; cost per prompt includes "
        f"the candidate pool. ★ = on the quality-per-{result.cost_unit[:-1]} frontier.</p>",
        _html_table(_STRATEGY_HEAD, _strategy_rows(result)),
    ]
    for svg in _plots(result):
        parts.append(f"<img alt='plot' src='{svg_data_uri(svg)}'>")
    if result.adaptive:
        parts.append("<h3>Adaptive sampling (replayed over the same pool)</h3>")
        parts.append(_html_table(_ADAPTIVE_HEAD, _adaptive_rows(result)))
    if result.comparisons:
        parts.append("<h3>Differences (same prompts, same pool)</h3>")
        parts.append(_html_table(_COMPARISON_HEAD, _comparison_rows(result)))
    if result.ceiling is not None:
        parts.append(f"<h3>{_e(_ceiling_title(result))}</h3>")
        parts.append(_html_table(_CEILING_HEAD, _ceiling_rows(result)))
    if result.models:
        scored_by = "accuracy" if result.metric == "accuracy" else "rubric score, 0–100"
        parts.append(f"<h3>Candidates by model ({_e(scored_by)})</h3>")
        parts.append(_html_table(["model", "quality %", "95% CI", "n"], _model_rows(result)))
    if result.languages:
        parts.append("<h3>By language</h3>")
        head = ["language", "strategy", "quality %", "95% CI", "n"]
        parts.append(_html_table(head, _language_rows(result)))
    return parts


def render_html(analysis: EvalAnalysis, context: ReportContext) -> str:
    """The whole report as one HTML document."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{_e(context.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(context.title)}</h1>",
        f"<p>{analysis.prompts} prompts evaluated; made {made}.</p>",
    ]
    if analysis.failed_rows:
        parts.append(
            f"<p class='warn'>{analysis.failed_rows} prompt(s) got no usable candidate and are "
            "listed in the generations errors file.</p>"
        )
    if context.command:
        parts.append(f"<p>Command:</p><pre>{_e(context.command)}</pre>")
    if context.settings:
        parts.append(_html_table(["setting", "value"], list(context.settings.items())))
    for note in context.notes:
        parts.append(f"<p>{_e(note)}</p>")
    for result in analysis.tasks:
        parts += _html_task(result)
    if context.sweep:
        parts.append("<h2>Majority vote by panel size</h2>")
        sweep = context.sweep
        svg = sweep_plot(
            "majority vote by panel size",
            [r.size for r in sweep],
            [r.vote for r in sweep],
            [r.oracle for r in sweep],
            [r.best_single for r in sweep],
        )
        parts.append(f"<img alt='plot' src='{svg_data_uri(svg)}'>")
        parts.append(_html_table(_SWEEP_HEAD, _sweep_rows(sweep)))
    if context.adaptive_curve:
        curve = context.adaptive_curve
        parts.append(f"<h2>{_e(_curve_title(context))}</h2>")
        svg = adaptive_curve_plot(
            "adaptive stopping vs the full vote",
            [p.label for p in curve],
            [p.calls for p in curve],
            [p.accuracy for p in curve],
            next(i for i, p in enumerate(curve) if p.label == FULL_VOTE),
        )
        parts.append(f"<img alt='plot' src='{svg_data_uri(svg)}'>")
        parts.append(_html_table(_CURVE_HEAD, _curve_rows(curve)))
    judge = _judge_lines(analysis)
    if judge:
        parts.append("<h2>Judge</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in judge) + "</ul>")
        if analysis.judge.unparseable_examples:
            parts.append("<p>Unparseable replies (first ones):</p>")
            parts += [f"<pre>{_e(x)}</pre>" for x in analysis.judge.unparseable_examples]
    parts.append("<h2>Recommendations</h2>")
    parts += [f"<div class='rec'>{_e(r.recommendation)}</div>" for r in analysis.tasks]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(analysis: EvalAnalysis, context: ReportContext) -> str:
    """The markdown summary (tables and recommendations, no plots)."""
    lines = [f"# {context.title}", "", f"{analysis.prompts} prompts evaluated.", ""]
    if context.command:
        lines += ["```", context.command, "```", ""]
    for result in analysis.tasks:
        lines += [f"## {result.task} — {result.metric} ({result.prompts} prompts)", ""]
        lines += [_md_table(_STRATEGY_HEAD, _strategy_rows(result)), ""]
        if result.adaptive:
            lines += [_md_table(_ADAPTIVE_HEAD, _adaptive_rows(result)), ""]
        if result.comparisons:
            lines += [_md_table(_COMPARISON_HEAD, _comparison_rows(result)), ""]
        if result.ceiling is not None:
            lines += [
                _ceiling_title(result),
                "",
                _md_table(_CEILING_HEAD, _ceiling_rows(result)),
                "",
            ]
        if result.models:
            lines += [_md_table(["model", "quality %", "95% CI", "n"], _model_rows(result)), ""]
        if result.languages:
            head = ["language", "strategy", "quality %", "95% CI", "n"]
            lines += [_md_table(head, _language_rows(result)), ""]
    if context.sweep:
        lines += [
            "## Majority vote by panel size",
            "",
            _md_table(_SWEEP_HEAD, _sweep_rows(context.sweep)),
            "",
        ]
    if context.adaptive_curve:
        lines += [
            f"## {_curve_title(context)}",
            "",
            _md_table(_CURVE_HEAD, _curve_rows(context.adaptive_curve)),
            "",
        ]
    judge = _judge_lines(analysis)
    if judge:
        lines += ["## Judge", "", *[f"- {x}" for x in judge], ""]
    lines += ["## Recommendations", "", *[f"- {r.recommendation}" for r in analysis.tasks], ""]
    return "\n".join(lines)
