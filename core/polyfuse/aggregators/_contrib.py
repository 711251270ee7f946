"""Who contributed: how much of a synthesized answer comes from each candidate."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..results import Candidate

_WORD = re.compile(r"\w+", re.UNICODE)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def contributions(answer: str, candidates: Sequence[Candidate], n: int = 4) -> dict[int, float]:
    """Share of the answer's word ``n``-grams found in each candidate (0..1, rounded)."""
    target = _ngrams(answer, n)
    if not target:
        return {c.index: 0.0 for c in candidates}
    return {c.index: round(len(target & _ngrams(c.text, n)) / len(target), 3) for c in candidates}
