"""What processing one prompt gives: a record line or an error line, plus its spend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RowOutcome", "encode_line"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_line(data: Mapping[str, Any]) -> str:
    """One JSON line (no newline): compact, UTF-8, no NaN."""
    return _encoder.encode(data)


@dataclass(frozen=True)
class RowOutcome:
    """The result of one prompt.

    Attributes:
        input_hash: the prompt's hash.
        ok: True for a record (goes to the output), False for a failure (the errors file).
        line: the JSON text to append, without its newline.
        tokens: tokens spent on the prompt, every role summed.
        cost_usd: what those tokens cost (0 where unpriced).
    """

    input_hash: str
    ok: bool
    line: str
    tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (a Ray Data row)."""
        return {
            "input_hash": self.input_hash,
            "ok": self.ok,
            "line": self.line,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowOutcome:
        """The inverse of :meth:`to_dict`."""
        return cls(
            input_hash=str(data["input_hash"]),
            ok=bool(data["ok"]),
            line=str(data["line"]),
            tokens=int(data["tokens"]),
            cost_usd=float(data["cost_usd"]),
        )
