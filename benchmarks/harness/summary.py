"""The targets of issue #12 against the latest results: ``python -m benchmarks.harness.summary``.

Reads ``benchmarks/results/*.json`` (written by the figure scripts), prints one row per target
(polyfuse, polyfuse fanned out, the best peer, the target, met or not) and replaces the
``summary`` section of ``benchmarks/README.md``. It measures nothing itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from .contenders import PEERS
from .report import README, RESULTS_DIR, _replace_section, fmt, markdown_table

__all__ = ["main", "targets"]

Row = dict[str, Any]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _pick(rows: list[Row], name: str, **match: Any) -> Row:
    for row in rows:
        if row["name"] == name and all(row.get(k) == v for k, v in match.items()):
            return row
    return {}


def _best(rows: list[Row], key: str, highest: bool, **match: Any) -> float | None:
    values = [
        r[key]
        for r in rows
        if r["name"] in PEERS
        and r.get(key) is not None
        and all(r.get(k) == v for k, v in match.items())
    ]
    if not values:
        return None
    return max(values) if highest else min(values)


def _target(
    what: str,
    rows: list[Row],
    key: str,
    *,
    factor: float,
    highest: bool = False,
    best: float | None = None,
    **match: Any,
) -> Row:
    """polyfuse and its fan-out row against ``factor`` × the best peer."""
    if best is None:
        best = _best(rows, key, highest, **match)
    goal = None if best is None else best * factor
    row: Row = {"what": what, "best": best, "goal": goal, "at_most": not highest}
    row["floor"] = _pick(rows, "raw", **match).get(key)
    for name, column in (("polyfuse", "poly"), ("polyfuse-fanout", "fan")):
        value = _pick(rows, name, **match).get(key)
        row[column] = value
        row[f"{column}_met"] = (
            None if value is None or goal is None else (value >= goal if highest else value <= goal)
        )
    return row


def targets() -> list[Row]:
    """One row per target whose figure has results."""
    out: list[Row] = []
    overhead = _load("overhead")
    if overhead:
        rows = overhead["rows"]
        out.append(
            _target("overhead p50 at c=1, ms (≤ ¼ best peer)", rows, "over_p50_ms", factor=0.25)
        )
        out.append(
            _target("overhead p99 at c=1, ms (≤ ¼ best peer)", rows, "over_p99_ms", factor=0.25)
        )
        out.append(
            _target(
                "client CPU per fusion at c=1 (overhead run), ms (≤ ¼)", rows, "cpu_ms", factor=0.25
            )
        )
    load = _load("load")
    if load:
        for level in load["levels"]:
            out.append(
                _target(
                    f"client CPU per fusion at c={level}, steady state, ms (≤ ¼)",
                    load["rows"],
                    "cpu_ms",
                    factor=0.25,
                    level=level,
                )
            )
        for level in (lv for lv in load["levels"] if lv >= 64):
            out.append(
                _target(
                    f"fusions/s at c={level}, steady state (≥ 4×)",
                    load["rows"],
                    "rate",
                    factor=4,
                    highest=True,
                    level=level,
                )
            )
    burst = _load("burst")
    if burst:
        for level in burst["levels"]:
            at = [r for r in burst["rows"] if r["level"] == level]
            best = _best(at, "rate", True)
            bound = _best(at, "rate_bound", True)
            if bound is not None and (best is None or bound > best):
                best = bound
            out.append(
                _target(
                    f"fusions/s, {level} started at once, all done (≥ 4×)",
                    at,
                    "rate",
                    factor=4,
                    highest=True,
                    best=best,
                )
            )
        top = max(burst["levels"])
        out.append(
            _target(
                f"peak RSS with {top} in flight, MB (≤ ½)",
                [r for r in burst["rows"] if r["level"] == top],
                "rss_mb",
                factor=0.5,
            )
        )
    straggler = _load("straggler")
    if straggler:
        row = _pick(straggler["rows"], "polyfuse", case="1 straggler")
        fan = _pick(straggler["rows"], "polyfuse-fanout", case="1 straggler")
        value = row.get("vs_calm_p50")
        out.append(
            {
                "what": "straggler: p99 / own no-straggler p50 (≤ 1.2; polyfuse with quorum=4)",
                "poly": value,
                "fan": fan.get("vs_calm_p50"),
                "floor": _pick(straggler["rows"], "raw", case="1 straggler").get("vs_calm_p50"),
                "best": _best(straggler["rows"], "vs_calm_p50", False, case="1 straggler"),
                "goal": 1.2,
                "at_most": True,
                "poly_met": None if value is None else value <= 1.2,
            }
        )
    ttft = _load("ttft")
    if ttft:
        rows = ttft["rows"]
        out.append(
            _target("fused TTFT over ideal p50, ms (≤ +5 ms)", rows, "over_p50_ms", factor=1.0)
        )
        out[-1]["goal"] = 5.0
        for column in ("poly", "fan"):
            value = out[-1][column]
            out[-1][f"{column}_met"] = None if value is None else value <= 5.0
    return out


def _met(value: bool | None) -> str:
    return "–" if value is None else ("met" if value else "**not met**")


def main() -> None:
    """Print the targets table and update the README's summary section."""
    rows = targets()
    columns: list[tuple[str, Callable[[Row], Any]]] = [
        ("target (ratio to the best peer)", lambda r: r["what"]),
        ("polyfuse", lambda r: fmt(r.get("poly"), 2)),
        ("", lambda r: _met(r.get("poly_met"))),
        ("polyfuse fan-out", lambda r: fmt(r.get("fan"), 2)),
        (" ", lambda r: _met(r.get("fan_met"))),
        ("best peer", lambda r: fmt(r.get("best"), 2)),
        ("target value", lambda r: fmt(r.get("goal"), 2)),
        ("raw-socket floor", lambda r: fmt(r.get("floor"), 2)),
    ]
    table = markdown_table(rows, columns)
    print(table)
    if "--no-readme" not in sys.argv and README.exists():
        body = (
            "### Targets of issue #12 against the tables below\n\n"
            "Command: `.venv/bin/python -m benchmarks.harness.summary` (reads "
            "`results/*.json`; measures nothing). *polyfuse* is the default (one `n`-batched "
            "request for the candidates where the server honours `n`); *polyfuse fan-out* sends "
            "N requests like every peer.\n\n" + table
        )
        _replace_section("summary", body)


if __name__ == "__main__":
    main()
