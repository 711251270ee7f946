"""The Ray Data actor of ``polyfuse eval``: distill's Ray engine runs it instead of distill's
own actor, so an eval scales out the same way (``engine="ray"``)."""

from __future__ import annotations

from ..distill.ray_engine import RowActor
from .processor import EvalProcessor
from .setup import EvalPlan, build_setup

__all__ = ["EvalActor"]


class EvalActor(RowActor):
    """Builds the eval setup and its processor once per actor; batches run as distill's do."""

    def __init__(self, plan: EvalPlan, share: int, sampling_slots: int) -> None:
        setup, self.panel = build_setup(plan, share=share)
        super().__init__(EvalProcessor(setup), sampling_slots)
