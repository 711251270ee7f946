"""Token usage, summed honestly over every call a fusion makes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Usage", "UsageByRole"]


class Usage(BaseModel):
    """Token counts of one or more calls.

    ``calls`` counts every call summed in; ``calls_without_usage`` counts those whose server
    reported no usage. Those calls contribute zero tokens: polyfuse never invents numbers, so
    when ``calls_without_usage > 0`` the totals are a lower bound.
    """

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0
    calls_without_usage: int = 0

    @property
    def complete(self) -> bool:
        """True when every call summed in reported its usage."""
        return self.calls_without_usage == 0

    def __add__(self, other: Usage) -> Usage:
        return Usage.model_construct(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            calls=self.calls + other.calls,
            calls_without_usage=self.calls_without_usage + other.calls_without_usage,
        )

    @classmethod
    def sum(cls, usages: Iterable[Usage]) -> Usage:
        """Sum several usages."""
        total = cls()
        for usage in usages:
            total = total + usage
        return total

    @classmethod
    def missing(cls) -> Usage:
        """Usage of one call whose server reported none."""
        return cls.model_construct(
            prompt_tokens=0, completion_tokens=0, total_tokens=0, calls=1, calls_without_usage=1
        )

    @classmethod
    def from_openai(cls, data: Mapping[str, Any] | None) -> Usage:
        """Read an OpenAI ``usage`` object; tolerate missing or partial fields."""
        if not data:
            return cls.missing()
        prompt = _as_int(data.get("prompt_tokens"))
        completion = _as_int(data.get("completion_tokens"))
        total = _as_int(data.get("total_tokens"))
        if prompt is None and completion is None and total is None:
            return cls.missing()
        prompt = prompt or 0
        completion = completion or 0
        return cls.model_construct(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total if total is not None else prompt + completion,
            calls=1,
            calls_without_usage=0,
        )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class UsageByRole(BaseModel):
    """Usage split by the role of each call, plus the total.

    Roles: ``candidates`` (sampling, including MoA proposer layers), ``aggregator`` (the fusor,
    the USC selector, the MoA aggregator) and ``judge`` (Best-of-N scoring).
    """

    candidates: Usage = Usage()
    aggregator: Usage = Usage()
    judge: Usage = Usage()
    saved: Usage = Usage()
    """Calls *not* made thanks to adaptive sampling and the consensus shortcut, with an estimate
    of their tokens (the mean of the calls that were made); not part of :attr:`total`."""

    @property
    def total(self) -> Usage:
        """Every call made, summed."""
        return self.candidates + self.aggregator + self.judge

    def model_dump_total(self) -> dict[str, Any]:
        """The split plus the total, as plain data."""
        data = self.model_dump()
        data["total"] = self.total.model_dump()
        return data
