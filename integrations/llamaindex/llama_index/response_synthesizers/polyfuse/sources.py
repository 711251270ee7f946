"""Numbered sources: how drafts see the retrieved context, and how it fits a context window.

Source ``n`` is the ``n``-th retrieved node (``response.source_nodes[n - 1]``); every prompt
shows it under that number, whatever slice or order a draft gets, so citations stay comparable
across drafts and map back to the nodes.

Context-window policy (per prompt, counted with the synthesizer's tokenizer):

* the prompt without sources (instructions and query) plus the tokens reserved for the answer
  must fit the model's window, else :class:`ContextWindowError`;
* sources are added in the slice's order while they fit; the first source of a slice is cut
  to the space left when it alone is too long (so every draft sees some context); later
  sources that do not fit are left out of that prompt;
* what was left out or cut is recorded in ``Response.metadata["polyfuse"]``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from polyfuse import InvalidRequestError

__all__ = [
    "ContextMode",
    "ContextWindowError",
    "Packed",
    "Source",
    "TokenCounter",
    "layouts",
    "pack",
    "render_sources",
]

ContextMode = Literal["full", "partition", "shuffle"]
"""How drafts see the sources: ``full`` (all, in retrieval order), ``partition`` (draft ``i``
sees sources ``i, i + k, i + 2k, ...`` of ``k`` slices), ``shuffle`` (all, each draft in a
different order: retrieval order, reversed, then seeded shuffles)."""

TokenCounter = Callable[[str], int]

_TAG = re.compile(r"</?(source|draft)\b", re.IGNORECASE)
_SEPARATOR = "\n\n"


class ContextWindowError(InvalidRequestError):
    """The query and prompt alone do not fit the model's context window."""


@dataclass(frozen=True)
class Source:
    """One retrieved node's text under its citation number (1-based)."""

    number: int
    text: str


@dataclass
class Packed:
    """The sources that fit one prompt, in the order shown."""

    sources: list[Source]
    omitted: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)


def _neutralise(text: str) -> str:
    """Defuse our delimiter tags inside untrusted text so it cannot close its block."""
    return _TAG.sub(lambda m: m.group(0).replace("<", "<\u200b"), text)


def _render_one(source: Source) -> str:
    return f'<source id="{source.number}">\n{_neutralise(source.text.strip())}\n</source>'


def render_sources(sources: Sequence[Source]) -> str:
    """Sources as delimited blocks labelled with their citation numbers."""
    return _SEPARATOR.join(_render_one(s) for s in sources)


def layouts(sources: Sequence[Source], drafts: int, mode: ContextMode) -> list[list[Source]]:
    """What each of ``drafts`` drafts sees, before fitting a window.

    With ``partition`` there are ``min(drafts, len(sources))`` slices dealt round-robin (so
    each mixes high- and low-ranked sources); extra drafts reuse the slices in turn.
    """
    if drafts < 1:
        raise InvalidRequestError(f"num_drafts must be >= 1 (got {drafts})")
    ordered = list(sources)
    if mode == "full":
        return [ordered for _ in range(drafts)]
    if mode == "partition":
        k = max(1, min(drafts, len(ordered)))
        slices = [ordered[i::k] for i in range(k)]
        return [slices[i % k] for i in range(drafts)]
    if mode == "shuffle":
        views: list[list[Source]] = []
        for i in range(drafts):
            if i == 0:
                views.append(ordered)
            elif i == 1:
                views.append(ordered[::-1])
            else:
                view = list(ordered)
                random.Random(i).shuffle(view)
                views.append(view)
        return views
    raise InvalidRequestError(
        f"unknown context mode {mode!r}; use 'full', 'partition' or 'shuffle'"
    )


def pack(
    sources: Sequence[Source],
    *,
    budget: int,
    count: TokenCounter,
    what: str,
) -> Packed:
    """Fit ``sources`` into ``budget`` tokens (see the module's policy).

    ``what`` names the prompt in the error message, e.g. ``"the draft prompt for gpt-4o"``.

    Raises:
        ContextWindowError: ``budget`` is not positive (the prompt alone is too long).
    """
    if budget <= 0:
        raise ContextWindowError(
            f"{what} does not fit: the instructions and query alone leave {budget} tokens for "
            "the sources. Shorten the query, use a model with a larger context window "
            "(context_window=...), or reserve fewer tokens for the answer (num_output=...)"
        )
    packed = Packed(sources=[])
    left = budget
    for source in sources:
        cost = count(_render_one(source)) + count(_SEPARATOR)
        if cost <= left:
            packed.sources.append(source)
            left -= cost
        elif not packed.sources:
            cut = _truncate(source, left, count)
            if cut is None:
                packed.omitted.append(source.number)
            else:
                packed.sources.append(cut)
                packed.truncated.append(source.number)
                left = 0
        else:
            packed.omitted.append(source.number)
    return packed


def _truncate(source: Source, budget: int, count: TokenCounter) -> Source | None:
    """The longest prefix of ``source`` whose block fits ``budget`` tokens (None if none)."""
    lo, hi = 0, len(source.text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = Source(source.number, source.text[:mid])
        if count(_render_one(candidate)) + count(_SEPARATOR) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return Source(source.number, source.text[:lo])
