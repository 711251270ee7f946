"""Pydantic validation errors as one readable line (shared by every edge that validates)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from pydantic import ValidationError


def describe_validation_error(
    exc: ValidationError, *, root: str = "", hints: Mapping[str, str] | None = None
) -> str:
    """``field.path: problem; ...`` for every error in ``exc``.

    Args:
        root: the label of errors that concern the whole object (empty location).
        hints: replacement messages by pydantic error type, e.g. for ``extra_forbidden``.
    """
    parts: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or root
        msg = str(err["msg"]).removeprefix("Value error, ")
        if hints and err["type"] in hints:
            msg = hints[err["type"]]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


_SYNONYMS: dict[str, str] = {
    "n_candidates": "n",
    "num_candidates": "n",
    "n_samples": "n",
    "samples": "n",
    "num_samples": "n",
    "aggregator": "strategy",
    "method": "strategy",
    "judge": "fusor",
}
"""Names users coming from other libraries type, and the setting they mean (checked before
the closest spelling, which would e.g. turn ``n_candidates`` into ``min_candidates``)."""


def nearest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` most likely meant (a common synonym or the closest spelling)."""
    choices = list(known)
    synonym = _SYNONYMS.get(name)
    if synonym is not None and synonym in choices:
        return synonym
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_names(names: Iterable[str], known: Iterable[str], *, what: str = "setting") -> str:
    """``unknown setting 'quorom' (did you mean 'quorum'?)`` for each of ``names``."""
    choices = sorted(known)
    parts: list[str] = []
    for name in names:
        guess = nearest_name(name, choices)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        parts.append(f"unknown {what} {name!r}{hint}")
    return "; ".join(parts)


def unknown_choice(value: object, choices: Sequence[str], *, what: str) -> str:
    """``unknown strategy 'bestofn'; use one of ... (did you mean 'best-of-n'?)``."""
    guess = nearest_name(value, choices) if isinstance(value, str) else None
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"unknown {what} {value!r}; use one of {', '.join(choices)}{hint}"
