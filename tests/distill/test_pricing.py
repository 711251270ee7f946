"""Prices per 1M tokens: flags, files, lookup by endpoint name then model, honest totals."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse import Usage
from polyfuse.distill import DistillConfigError, Price, PriceTable


def _usage(prompt: int, completion: int, *, reported: bool = True) -> Usage:
    if not reported:
        return Usage.missing()
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        calls=1,
    )


def test_cost_by_name_then_model_and_completeness() -> None:
    table = PriceTable({"qwen": Price(input=0.2, output=0.6), "org/llama": (1.0, 2.0)})
    cost = table.cost(
        [
            ("qwen", "Qwen/Qwen2.5-7B", _usage(1_000_000, 500_000)),
            ("llama", "org/llama", _usage(2_000, 1_000)),
        ]
    )
    assert cost.by_model == {"llama": pytest.approx(0.004), "qwen": pytest.approx(0.5)}
    assert cost.usd == pytest.approx(0.504) and cost.complete and cost.unpriced == []
    partial = table.cost([("qwen", None, _usage(0, 0, reported=False)), ("x", "y", _usage(1, 1))])
    assert partial.unpriced == ["x"] and partial.complete is False and partial.usd == 0.0
    assert PriceTable({}).cost([("x", None, _usage(5, 5))]).usd is None


def test_prices_from_flags_and_files(tmp_path: Path) -> None:
    assert PriceTable.parse(["gpt-4o=2.5/10"]).lookup("gpt-4o", None) == Price(input=2.5, output=10)
    toml = tmp_path / "prices.toml"
    toml.write_text("[prices.qwen]\ninput = 0.2\noutput = 0.6\n")
    json_file = tmp_path / "prices.json"
    json_file.write_text('{"qwen": {"input": 0.3, "output": 0.7}}')
    assert PriceTable.from_file(toml).lookup("qwen", None) == Price(input=0.2, output=0.6)
    merged = PriceTable.from_file(toml).merged(PriceTable.from_file(json_file))
    assert merged.lookup("qwen", None) == Price(input=0.3, output=0.7)
    for bad in ("qwen", "qwen=1", "qwen=a/b", "=1/2"):
        with pytest.raises(DistillConfigError, match="NAME=INPUT/OUTPUT"):
            PriceTable.parse([bad])
    broken = tmp_path / "broken.toml"
    broken.write_text("[prices.qwen]\ninput = -1\noutput = 1\n")
    with pytest.raises(DistillConfigError, match="invalid price for 'qwen'"):
        PriceTable.from_file(broken)
    with pytest.raises(DistillConfigError, match="cannot read prices file"):
        PriceTable.from_file(tmp_path / "missing.toml")
