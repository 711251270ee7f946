"""Majority vote (self-consistency) over extracted answers."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import ClassVar, Literal

from ..results import AggregationRecord, Candidate
from .base import Aggregate, AggregationContext, Aggregator

__all__ = [
    "Extractor",
    "MajorityVote",
    "extract_answer_tag",
    "extract_boxed",
    "extract_last_number",
]

Extractor = Callable[[Candidate], "str | None"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def extract_last_number(candidate: Candidate) -> str | None:
    """The last number in the text (``1,000.50`` → ``1000.5``)."""
    matches = _NUMBER.findall(candidate.text)
    return _normalise_number(matches[-1]) if matches else None


def _normalise_number(raw: str) -> str:
    cleaned = raw.replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return cleaned
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def extract_boxed(candidate: Candidate) -> str | None:
    r"""The content of the last ``\boxed{...}`` (nested braces allowed)."""
    text = candidate.text
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    i = start + len("\\boxed{")
    begin = i
    while i < len(text):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
        i += 1
    return None


def extract_answer_tag(candidate: Candidate) -> str | None:
    """The content of the last ``<answer>...</answer>`` tag."""
    matches = _ANSWER_TAG.findall(candidate.text)
    return matches[-1].strip() if matches else None


def extract_exact(candidate: Candidate) -> str | None:
    """The whole text."""
    return candidate.text.strip() or None


def extract_tool_calls(candidate: Candidate) -> str | None:
    """The tool calls as a canonical (name, arguments) key, so equal calls vote together."""
    if not candidate.tool_calls:
        return None
    keys: list[object] = []
    for call in candidate.tool_calls:
        try:
            arguments: object = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = call.function.arguments
        keys.append([call.function.name, arguments])
    return json.dumps(keys, sort_keys=True)


def default_normalise(answer: str) -> str:
    """Lower-case, collapse whitespace, drop surrounding punctuation and ``$``."""
    answer = " ".join(answer.lower().split())
    answer = answer.strip(" .,;:!$")
    if _NUMBER.fullmatch(answer):
        return _normalise_number(answer)
    return answer


_BUILTIN: dict[str, Extractor] = {
    "last_number": extract_last_number,
    "boxed": extract_boxed,
    "answer_tag": extract_answer_tag,
    "exact": extract_exact,
    "tool_calls": extract_tool_calls,
}

ExtractorName = Literal["last_number", "boxed", "answer_tag", "exact", "tool_calls"]


class MajorityVote(Aggregator):
    """Self-consistency: extract each candidate's answer, normalise it, return the majority.

    Ties go to the answer whose first supporter has the lowest candidate index, so the result is
    deterministic. The returned message is the first candidate that gave the winning answer.

    Args:
        extract: ``"last_number"``, ``"boxed"``, ``"answer_tag"``, ``"exact"``, ``"tool_calls"``
            (vote on (name, arguments)), or a callable ``Candidate -> str | None``.
        normalise: maps an extracted answer to its voting key (default: case, space and number
            normalisation); pass ``None`` to vote on the raw extraction.
    """

    method: ClassVar[str] = "vote"

    def __init__(
        self,
        extract: ExtractorName | Extractor = "last_number",
        *,
        normalise: Callable[[str], str] | None = default_normalise,
    ) -> None:
        if isinstance(extract, str):
            if extract not in _BUILTIN:
                raise ValueError(
                    f"unknown extractor {extract!r}; use one of {', '.join(_BUILTIN)} or a callable"
                )
            self.extractor_name = extract
            self.extract: Extractor = _BUILTIN[extract]
        else:
            self.extractor_name = getattr(extract, "__name__", "custom")
            self.extract = extract
        self.normalise = normalise

    def __repr__(self) -> str:
        return f"MajorityVote(extract={self.extractor_name!r})"

    def keys(self, candidates: list[Candidate]) -> dict[int, str | None]:
        """Each candidate's voting key (``None`` when no answer could be extracted)."""
        out: dict[int, str | None] = {}
        for candidate in candidates:
            raw = self.extract(candidate)
            if (
                raw is not None
                and self.normalise is not None
                and self.extractor_name != "tool_calls"
            ):
                raw = self.normalise(raw)
            out[candidate.index] = raw or None
        return out

    async def aggregate(self, ctx: AggregationContext) -> Aggregate:
        """Vote."""
        return self.vote(ctx.candidates)

    def vote(self, candidates: list[Candidate]) -> Aggregate:
        """Vote synchronously (no model calls)."""
        keys = self.keys(candidates)
        counts = Counter(k for k in keys.values() if k is not None)
        record = AggregationRecord(method=self.method)
        if not counts:
            first = candidates[0]
            record.selected = first.index
            record.fallback_reason = "no candidate had an extractable answer; returned the first"
            return Aggregate(message=first.message(), record=record)
        first_seen: dict[str, int] = {}
        for index in sorted(keys):
            key = keys[index]
            if key is not None:
                first_seen.setdefault(key, index)
        winner = max(counts, key=lambda k: (counts[k], -first_seen[k]))
        selected = first_seen[winner]
        record.selected = selected
        record.scores = {i: float(counts[k]) if k is not None else None for i, k in keys.items()}
        record.notes.append(
            f"answer {winner[:80]!r} won {counts[winner]} of {len(candidates)} votes"
        )
        chosen = next(c for c in candidates if c.index == selected)
        return Aggregate(message=chosen.message(), record=record)
