"""Writing a figure out: JSON results, a markdown table, a PNG plot, and the README section.

Each figure owns a section of ``benchmarks/README.md`` between ``<!-- figure:NAME -->`` and
``<!-- /figure:NAME -->``; :func:`publish` replaces it with the new table, the command that
produced it and the run's conditions, so the README always shows one run per table.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "Column",
    "fmt",
    "markdown_table",
    "plot_path",
    "publish",
    "save_json",
]

BENCH_DIR = Path(__file__).resolve().parents[1]
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"

Column = tuple[str, Callable[[dict[str, Any]], Any]]
"""A table column: header and how to get its value from a row."""


def fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    """A number for a table cell ("–" when missing)."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """A GitHub markdown table."""
    lines = [
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(get(row)) for _, get in columns) + " |")
    return "\n".join(lines)


def plot_path(name: str, published: bool) -> Path:
    """Where a figure's PNG goes: next to the README when the run is published, else a
    scratch file in ``results/`` (``NAME.png.tmp``, ignored by git) that leaves the published
    plot alone."""
    if published:
        return BENCH_DIR / f"{name}.png"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{name}.png.tmp"


def save_json(name: str, data: dict[str, Any], *, published: bool = True) -> Path:
    """Write ``results/NAME.json`` (``NAME.json.tmp`` for an unpublished run, so that trying a
    figure with ``--no-readme`` or against another server leaves the published results alone);
    return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / (f"{name}.json" if published else f"{name}.json.tmp")
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def command_line() -> str:
    """The command that is running, as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(BENCH_DIR.parent))
    except ValueError:
        shown = str(script)
    return " ".join([".venv/bin/python", shown, *map(shlex.quote, sys.argv[1:])])


def publish(
    name: str,
    title: str,
    table: str,
    data: dict[str, Any],
    *,
    plot: str | None = None,
    verdict: Sequence[str] = (),
    update_readme: bool = True,
) -> None:
    """Save the JSON, print the table, and (unless told not to) update the README section."""
    data = {"figure": name, "command": command_line(), **data}
    path = save_json(name, data, published=update_readme)
    print(table)
    for line in verdict:
        print(line)
    print(f"results: {path}")
    if not update_readme:
        return
    env = data.get("env", {})
    conditions = (
        f"Measured {env.get('started', '?')} on {env.get('machine', '?')}, Python "
        f"{env.get('python', '?')}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in env.get('load_avg_at_start', []))}."
    )
    parts = [
        f"### {title}",
        "",
        f"Command: `{data['command']}`",
        "",
        conditions,
        "",
        table,
        "",
    ]
    if verdict:
        parts += [*(f"- {line}" for line in verdict), ""]
    if plot:
        parts += [f"![{title}]({plot})", ""]
    parts.append(f"Raw results: [`results/{name}.json`](results/{name}.json).")
    for note in env.get("notes", []):
        parts.append(f"Note: {note}.")
    _replace_section(name, "\n".join(parts))


def _replace_section(name: str, body: str) -> None:
    start, end = f"<!-- figure:{name} -->", f"<!-- /figure:{name} -->"
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")
