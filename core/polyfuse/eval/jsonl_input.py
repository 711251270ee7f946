"""Reading the JSONL files an eval is given (eval sets, pools files), plain or gzip-ed."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import EvalDataError

__all__ = ["read_objects"]


def read_objects(path: Path, *, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``path`` (``.gz`` is decompressed).

    Raises :class:`~polyfuse.eval.EvalDataError` when the file is missing or unreadable, or
    names the line (``path:N:``) that is not valid JSON or not a JSON object; ``what`` names
    the file in messages (``"eval set"``, ``"pools file"``).
    """
    if not path.exists():
        raise EvalDataError(f"the {what} {str(path)!r} does not exist; pass its path")
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise EvalDataError(f"{str(path)}:{number}: not valid JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise EvalDataError(f"{str(path)}:{number}: not a JSON object")
                yield number, record
    except OSError as exc:
        raise EvalDataError(f"cannot read {str(path)!r}: {exc}") from None
