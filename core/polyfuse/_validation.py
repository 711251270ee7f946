"""Pydantic validation errors as one readable line (shared by every edge that validates)."""

from __future__ import annotations

from collections.abc import Mapping

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
