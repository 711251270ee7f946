"""The Ray Data actor of ``polyfuse eval``: distill's Ray engine runs it instead of distill's
own actor, so an eval scales out the same way (``engine="ray"``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..distill.inputs import PromptRow
from .processor import EvalProcessor
from .setup import EvalPlan, build_setup

__all__ = ["EvalActor"]

_COLUMNS = ("input_hash", "ok", "line", "tokens", "cost_usd")


class EvalActor:
    """Builds the eval setup once per actor and processes each batch's rows concurrently."""

    def __init__(self, plan: EvalPlan, share: int, sampling_slots: int) -> None:
        setup, self.panel = build_setup(plan, share=share)
        self.processor = EvalProcessor(setup)
        self.sampling_slots = sampling_slots
        self._gate: asyncio.Semaphore | None = None

    async def __call__(self, batch: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
        """One outcome row per input row (column ``row``: the row as JSON)."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.sampling_slots)
        rows = [PromptRow.from_dict(json.loads(text)) for text in batch["row"]]
        outcomes = await asyncio.gather(*(self.processor.process(r, self._gate) for r in rows))
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for outcome in outcomes:
            for name, value in outcome.to_dict().items():
                columns[name].append(value)
        return columns
