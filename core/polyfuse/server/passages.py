"""Which candidates each passage of an answer came from, by word n-gram overlap.

The engine's ``contributions`` say how much of the whole answer each candidate supports; this
splits the answer into passages (sentences and lines) and names, for each one, the candidates
that contain most of it, so that a reader can see where every part of a fused answer came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..results import Candidate

__all__ = ["SOURCE_THRESHOLD", "Passage", "attribute_passages", "split_passages"]

SOURCE_THRESHOLD = 0.5
"""A candidate is a passage's source when it contains at least this share of its n-grams."""

_NGRAM = 3  # sentences are short: 3-grams still tell a copied phrase from shared vocabulary
_WORD = re.compile(r"\w+", re.UNICODE)
# A passage ends after a sentence's end mark and its spaces, or at a line break.
_BOUNDARY = re.compile(r"(?<=[.!?])[ \t]+|\n\s*")


@dataclass(frozen=True)
class Passage:
    """One passage of an answer and the candidates it came from.

    Attributes:
        text: the passage, exactly as in the answer (the passages joined give the answer back).
        sources: indices of the candidates containing at least :data:`SOURCE_THRESHOLD` of its
            word n-grams, best first.
        overlap: each usable candidate's share of the passage's n-grams (0..1, rounded).
    """

    text: str
    sources: list[int] = field(default_factory=list[int])
    overlap: dict[int, float] = field(default_factory=dict[int, float])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON object keys are strings)."""
        return {
            "text": self.text,
            "sources": self.sources,
            "overlap": {str(k): v for k, v in self.overlap.items()},
        }


def split_passages(text: str) -> list[str]:
    """Split ``text`` into sentences and lines, keeping every character (``"".join`` gives
    ``text`` back); whitespace-only pieces stay attached to their neighbour."""
    passages: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if text[start:end].strip():
            passages.append(text[start:end])
            start = end
    rest = text[start:]
    if rest:
        if passages and not rest.strip():
            passages[-1] += rest
        else:
            passages.append(rest)
    return passages


def _grams_of_size(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def attribute_passages(answer: str, candidates: Sequence[Candidate]) -> list[Passage]:
    """Split ``answer`` into passages and name the candidates each one came from.

    Only candidates with text take part. A passage with no word (punctuation, a list marker)
    has no source.
    """
    usable = [c for c in candidates if c.ok and c.text]
    words_of = {c.index: _WORD.findall(c.text.lower()) for c in usable}
    passages: list[Passage] = []
    for piece in split_passages(answer):
        words = _WORD.findall(piece.lower())
        n = min(_NGRAM, len(words))
        if n == 0:
            passages.append(Passage(piece))
            continue
        target = _grams_of_size(words, n)
        overlap = {
            index: round(len(target & _grams_of_size(cand_words, n)) / len(target), 3)
            for index, cand_words in words_of.items()
        }
        sources = sorted(
            (i for i, share in overlap.items() if share >= SOURCE_THRESHOLD),
            key=lambda i: (-overlap[i], i),
        )
        passages.append(Passage(piece, sources, overlap))
    return passages
