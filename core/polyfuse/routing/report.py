"""Router evaluation as tables (terminal and Markdown), a plot (matplotlib) and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .evaluate import MethodResult, RouterSpeed, ScenarioReport

__all__ = [
    "render_markdown",
    "render_plot",
    "render_speed",
    "render_speed_markdown",
    "render_tables",
    "results_json",
    "speed_json",
]

Results = dict[str, list[ScenarioReport]]
_BASELINES = ("best single", "random", "oracle")


def _reference_cost(results: Results) -> float:
    """The cost of the best single model of performance-first (the one to beat)."""
    for reports in results.values():
        for report in reports:
            if report.scenario.name == "performance-first":
                return report.methods["best single"].cost_usd
    first = next(iter(results.values()))[0]
    return first.methods["best single"].cost_usd


def _rows(results: Results) -> list[tuple[str, str, MethodResult]]:
    """(scenario, label, result) rows: every router, then the baselines, per scenario."""
    names = [r.scenario.name for r in next(iter(results.values()))]
    rows: list[tuple[str, str, MethodResult]] = []
    for index, scenario in enumerate(names):
        for router, reports in results.items():
            for method, result in reports[index].methods.items():
                if method == "router" or method.startswith("router "):
                    rows.append((scenario, router + method.removeprefix("router"), result))
        report = next(iter(results.values()))[index]
        for base in _BASELINES:
            label = f"best single ({report.best_single_model})" if base == "best single" else base
            rows.append((scenario, label, report.methods[base]))
    return rows


def _task_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    first = next(iter(results.values()))
    perf = next((r for r in first if r.scenario.name == "performance-first"), first[0])
    tasks = list(perf.methods["oracle"].per_task)
    header = ["task", f"best single ({perf.best_single_model})"]
    columns: list[dict[str, float]] = [perf.methods["best single"].per_task]
    for router, reports in results.items():
        for report in reports:
            for method, result in report.methods.items():
                if method == "router" or method.startswith("router "):
                    variant = method.removeprefix("router")
                    header.append(f"{router}{variant} {report.scenario.name}")
                    columns.append(result.per_task)
    header.append("oracle")
    columns.append(perf.methods["oracle"].per_task)
    body = [[task, *(f"{col.get(task, float('nan')):.3f}" for col in columns)] for task in tasks]
    return header, body


def _cells(result: MethodResult, reference: float) -> list[str]:
    share = result.cost_usd / reference if reference > 0 else float("nan")
    return [
        f"{result.score:.4f}",
        f"{result.cost_usd * 1000:.4f}",
        f"{share:.0%}",
        f"{result.reward:.4f}",
        _delta(result),
    ]


def _delta(result: MethodResult) -> str:
    if result.vs_best_single is None:
        return "-"
    diff, low, high = result.vs_best_single
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"


_HEADER = [
    "scenario",
    "method",
    "mean score",
    "$ / 1k queries",
    "cost vs best single",
    "reward",
    "score − best single (performance-first) [95% CI]",
]


def render_tables(console: Console, results: Results, *, tasks_known: bool, note: str = "") -> None:
    """Print the scenario table and the per-task table."""
    reference = _reference_cost(results)
    table = Table(
        title=f"routers on the held-out log (tasks {'given' if tasks_known else 'inferred'})"
    )
    for column in _HEADER:
        table.add_column(column)
    for scenario, label, result in _rows(results):
        table.add_row(scenario, escape(label), *_cells(result, reference))
    console.print(table)
    if note:
        console.print(escape(note))
    header, body = _task_rows(results)
    per_task = Table(title="mean score per task")
    for column in header:
        per_task.add_column(escape(column))
    for row in body:
        per_task.add_row(*(escape(c) for c in row))
    console.print(per_task)


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(esc(c) for c in row) + " |" for row in body)
    return "\n".join(lines)


def render_markdown(results: Results, *, tasks_known: bool, note: str = "") -> str:
    """Both tables as Markdown."""
    reference = _reference_cost(results)
    body = [[s, label, *_cells(r, reference)] for s, label, r in _rows(results)]
    header, task_body = _task_rows(results)
    mode = "given to" if tasks_known else "hidden from"
    return (
        f"Test queries' tasks {mode} the routers.\n\n"
        + _markdown_table(_HEADER, body)
        + (f"\n\n{note}" if note else "")
        + "\n\nMean score per task:\n\n"
        + _markdown_table(header, task_body)
        + "\n"
    )


def render_plot(results: Results, path: Path) -> None:
    """Score vs cost, one panel per scenario; routers and baselines as labelled points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(results.values()))
    perf = next((r for r in first if r.scenario.name == "performance-first"), first[0])
    target = perf.methods["best single"]
    fig, axes = plt.subplots(1, len(first), figsize=(5 * len(first), 4.2), squeeze=False)
    markers = {"best single": "s", "random": "x", "oracle": "*"}
    for index, report in enumerate(first):
        ax = axes[0][index]
        for base in _BASELINES:
            result = report.methods[base]
            ax.scatter(
                result.cost_usd * 1000, result.score, marker=markers[base], s=70, color="grey"
            )
            ax.annotate(
                base,
                (result.cost_usd * 1000, result.score),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        for number, (router, reports) in enumerate(results.items()):
            variants = [m for m in reports[index].methods if m.startswith("router")]
            for method, marker in zip(variants, "oDPv^<>", strict=False):
                result = reports[index].methods[method]
                suffix = method.removeprefix("router")
                ax.scatter(
                    result.cost_usd * 1000,
                    result.score,
                    s=70,
                    marker=marker,
                    color=f"C{number}",
                    label=router + suffix,
                )
        ax.legend(fontsize=7, loc="best")  # variants crowd each other: a legend, not labels
        ax.axhline(target.score, color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(target.cost_usd * 1000 / 2, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(
            f"{report.scenario.name} (dashed: best single model's score; dotted: half its cost)",
            fontsize=9,
        )
        ax.set_xlabel("$ per 1k queries (estimated)")
        ax.set_ylabel("mean score")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def results_json(results: Results) -> dict[str, Any]:
    """The results as plain JSON data."""
    return {
        router: [
            {
                "scenario": r.scenario.name,
                "alpha": r.scenario.alpha,
                "beta": r.scenario.beta,
                "best_single_model": r.best_single_model,
                "methods": {
                    name: {
                        "score": m.score,
                        "cost_usd": m.cost_usd,
                        "reward": m.reward,
                        "per_task": m.per_task,
                        "picks": m.picks,
                        "vs_best_single": m.vs_best_single,
                    }
                    for name, m in r.methods.items()
                },
            }
            for r in reports
        ]
        for router, reports in results.items()
    }


_SPEED_HEADER = [
    "router",
    "trained on",
    "fit s",
    "calibration s",
    "load ms",
    "route ms (median)",
    "route ms (p95)",
]


def _speed_rows(speeds: dict[str, RouterSpeed]) -> list[list[str]]:
    return [
        [
            name,
            f"{s.trained_queries} queries",
            f"{s.fit_seconds:.2f}",
            "-" if s.calibration_seconds is None else f"{s.calibration_seconds:.2f}",
            f"{s.load_ms:.1f}",
            f"{s.route_median_ms:.2f}",
            f"{s.route_p95_ms:.2f}",
        ]
        for name, s in speeds.items()
    ]


def render_speed(console: Console, speeds: dict[str, RouterSpeed]) -> None:
    """Print training (from the router files), loading and per-query routing times."""
    queries = next(iter(speeds.values())).queries if speeds else 0
    table = Table(title=f"speed (routing: embedding included, {queries} test queries)")
    for column in _SPEED_HEADER:
        table.add_column(column)
    for row in _speed_rows(speeds):
        table.add_row(*(escape(c) for c in row))
    console.print(table)


def render_speed_markdown(speeds: dict[str, RouterSpeed]) -> str:
    """The speed table as Markdown."""
    return _markdown_table(_SPEED_HEADER, _speed_rows(speeds)) + "\n"


def speed_json(speeds: dict[str, RouterSpeed]) -> dict[str, Any]:
    """The speed numbers as plain JSON data."""
    return {name: dict(vars(s)) for name, s in speeds.items()}
