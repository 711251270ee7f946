"""Prices per model (USD per 1M input and output tokens) and the cost of a record's calls."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..usage import Usage
from .errors import DistillConfigError

__all__ = ["Cost", "Price", "PriceTable"]


class Price(BaseModel):
    """USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def of(self, usage: Usage) -> float:
        """The cost of ``usage`` in USD."""
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1e6


@dataclass(frozen=True)
class Cost:
    """What a set of calls cost.

    ``usd`` sums the priced calls (``None`` when no call had a price); ``unpriced`` names the
    endpoints/models without one; ``complete`` is false when some calls were unpriced or did not
    report usage (then ``usd`` is a lower bound).
    """

    usd: float | None
    by_model: dict[str, float]
    unpriced: list[str]
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a record."""
        return {
            "usd": self.usd,
            "by_model": self.by_model,
            "unpriced": self.unpriced,
            "complete": self.complete,
        }


class PriceTable:
    """Prices keyed by endpoint name or model name (the endpoint name is looked up first).

    Example::

        prices = PriceTable({"gpt-4o": Price(input=2.5, output=10), "qwen": (0.2, 0.2)})
        prices = PriceTable.parse(["gpt-4o=2.5/10"])  # what --price takes
        prices = PriceTable.from_file("prices.toml")  # [prices.gpt-4o] input = 2.5 output = 10
    """

    def __init__(self, prices: Mapping[str, Price | Sequence[float] | Mapping[str, float]]) -> None:
        self.prices: dict[str, Price] = {}
        for name, raw in prices.items():
            try:
                if isinstance(raw, Price):
                    price = raw
                elif isinstance(raw, Mapping):
                    price = Price.model_validate(dict(raw))
                else:
                    values = list(raw)
                    if len(values) != 2:
                        raise ValueError("give two numbers: input and output")
                    price = Price(input=values[0], output=values[1])
            except (ValidationError, ValueError, TypeError) as exc:
                raise DistillConfigError(
                    f"invalid price for {name!r}: {exc}; give USD per 1M input and output "
                    "tokens, e.g. input = 0.5, output = 1.5"
                ) from None
            self.prices[name] = price

    def __bool__(self) -> bool:
        return bool(self.prices)

    def __repr__(self) -> str:
        return f"PriceTable({sorted(self.prices)})"

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PriceTable:
        """Prices from ``NAME=INPUT/OUTPUT`` strings, e.g. ``gpt-4o=2.5/10``."""
        table: dict[str, Price] = {}
        for entry in entries:
            name, sep, values = entry.partition("=")
            parts = values.split("/")
            try:
                if not sep or not name.strip() or len(parts) != 2:
                    raise ValueError
                table[name.strip()] = Price(input=float(parts[0]), output=float(parts[1]))
            except (ValueError, ValidationError):
                raise DistillConfigError(
                    f"{entry!r} is not a price; write NAME=INPUT/OUTPUT in USD per 1M tokens, "
                    "e.g. --price gpt-4o=2.5/10"
                ) from None
        return cls(table)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Prices from a TOML (``[prices.NAME]`` tables) or JSON (``{"NAME": {...}}``) file."""
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise DistillConfigError(f"cannot read prices file {str(path)!r}: {exc}") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                if sys.version_info >= (3, 11):
                    import tomllib
                else:  # pragma: no cover - Python 3.10
                    import tomli as tomllib  # pyright: ignore[reportMissingImports]
                data = tomllib.loads(text.decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
            raise DistillConfigError(f"prices file {str(path)!r} is not valid: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("prices"), dict):
            data = data["prices"]
        if not isinstance(data, dict):
            raise DistillConfigError(f"prices file {str(path)!r} must map names to prices")
        return cls(data)

    def merged(self, other: PriceTable) -> PriceTable:
        """These prices with ``other``'s on top."""
        return PriceTable({**self.prices, **other.prices})

    def lookup(self, name: str, model: str | None) -> Price | None:
        """The price of an endpoint (by its name, then by its model)."""
        price = self.prices.get(name)
        if price is None and model is not None:
            price = self.prices.get(model)
        return price

    def cost(self, calls: Iterable[tuple[str, str | None, Usage]]) -> Cost:
        """The cost of ``(endpoint name, model, usage)`` calls."""
        by_model: dict[str, float] = {}
        unpriced: set[str] = set()
        complete = True
        for name, model, usage in calls:
            if usage.calls_without_usage:
                complete = False
            price = self.lookup(name, model)
            if price is None:
                unpriced.add(name)
                continue
            by_model[name] = by_model.get(name, 0.0) + price.of(usage)
        rounded = {k: round(v, 10) for k, v in sorted(by_model.items())}
        return Cost(
            usd=round(sum(rounded.values()), 10) if rounded else None,
            by_model=rounded,
            unpriced=sorted(unpriced),
            complete=complete and not unpriced,
        )
