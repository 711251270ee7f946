"""Helpers the figure scripts share: rows, ratios to the best peer, target verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .contenders import CONTENDERS, PEERS

__all__ = ["best_peer", "interleaved", "label", "ms", "verdict"]


def label(name: str) -> str:
    """How tables name a contender."""
    return CONTENDERS[name].label


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds (None stays None)."""
    return None if seconds is None else seconds * 1000.0


def best_peer(rows: Sequence[dict[str, Any]], key: str, *, highest: bool = False) -> Any:
    """The best peer value of ``key`` (lowest unless ``highest``), or None."""
    values = [r[key] for r in rows if r["name"] in PEERS and r.get(key) is not None]
    if not values:
        return None
    return max(values) if highest else min(values)


def verdict(what: str, value: float | None, target: float | None, *, at_most: bool) -> str:
    """One line: the measured value against its target, and whether it is met."""
    if value is None or target is None:
        return f"{what}: not measured (missing value) — target not judged"
    met = value <= target if at_most else value >= target
    sign = "≤" if at_most else "≥"
    state = "met" if met else "NOT met"
    return f"{what}: {value:,.3g} vs target {sign} {target:,.3g} — {state}"


def interleaved(
    contenders: Sequence[str],
    run: Callable[[str, int], dict[str, Any]],
    count: int,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Run each contender's series in ``rounds`` chunks, rotating through the contenders, so
    that a burst of load from other processes falls on every contender alike.

    ``run(name, chunk)`` runs one chunk of ``chunk`` fusions in a worker and returns its
    result; the chunks of one contender are merged: lists concatenated, ``cpu_s``,
    ``fusions`` and ``server_cpu_s`` summed, ``peak_rss_mb`` the largest. A contender whose
    chunk fails keeps the error and is not run again.
    """
    merged: dict[str, dict[str, Any]] = {name: {} for name in contenders}
    chunk = max(1, count // max(1, rounds))
    for _ in range(max(1, rounds)):
        for name in contenders:
            into = merged[name]
            if "error" in into:
                continue
            result = run(name, chunk)
            if "fusions" not in result:
                into["error"] = result.get("error") or result.get("unavailable") or "no result"
                continue
            into["chunks"] = into.get("chunks", 0) + 1
            for key, value in result.items():
                if isinstance(value, list):
                    into.setdefault(key, []).extend(value)
                elif key in ("cpu_s", "fusions", "server_cpu_s"):
                    into[key] = into.get(key, 0) + value
                elif key == "peak_rss_mb":
                    into[key] = max(into.get(key, 0.0), value)
    return merged
