"""Helpers the figure scripts share: rows, ratios to the best peer, target verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .contenders import CONTENDERS, PEERS

__all__ = ["best_peer", "label", "ms", "verdict"]


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
