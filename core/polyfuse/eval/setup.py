"""What an eval runs, as plain serialisable data (:class:`EvalPlan`), and the live objects built
from it (:func:`build_setup`) — in the driver, or once per Ray actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..adaptive import AdaptiveSampling
from ..distill.panel import Panel
from ..distill.pricing import PriceTable
from ..distill.spec import METHOD_OF, DistillSpec
from ..messages import SamplingParams
from ..policy import QuorumPolicy
from ..spec import FusionOptions
from .processor import EvalSetup, base_strategy

__all__ = ["MODEL_FREE", "EvalPlan", "build_setup"]

MODEL_FREE: tuple[str, ...] = ("single", "vote", "adaptive-vote")
"""Strategies that need no model of their own."""


@dataclass(frozen=True)
class EvalPlan:
    """Everything that decides what a generation record contains.

    Args:
        strategies: the strategies, in report order.
        fingerprint: the configuration's hash (resume checks).
        spec: the distill spec holding the presets, the preset and the judge (``None`` for
            model-free replays).
        replay: rows carry recorded candidates; nothing is sampled.
        grader: a grader name overriding the rows'.
        prices: per-model prices.
        options: the fusion settings of the adaptive strategies (``adaptive``,
            ``answer_extract``, ``consensus``, ``consensus_similarity``): the preset's, with the
            command line's on top.
        shuffle_seed: the adaptive strategies draw recorded pools in a random order per prompt
            seeded by this (replays); ``None``: in pool order.
    """

    strategies: tuple[str, ...]
    fingerprint: str
    spec: DistillSpec | None = None
    replay: bool = False
    grader: str | None = None
    prices: PriceTable | None = None
    options: FusionOptions = field(default_factory=FusionOptions)
    shuffle_seed: int | None = None

    @property
    def model_strategies(self) -> list[str]:
        """The aggregators that call a model (an adaptive strategy's base, once)."""
        bases = [base_strategy(s) for s in self.strategies if s not in MODEL_FREE]
        return list(dict.fromkeys(bases))


def build_setup(plan: EvalPlan, *, share: int = 1) -> tuple[EvalSetup, Panel | None]:
    """The processor's setup and the panel it uses (close it with ``panel.aclose()``).

    ``share``: the number of processes driving the same endpoints (Ray actors); each gets that
    share of every endpoint's ``max_concurrency``.
    """
    panel = Panel.build(plan.spec, share=share) if plan.spec is not None else None
    setup = EvalSetup(
        strategies=plan.strategies,
        aggregators=(
            {s: panel.aggregators[METHOD_OF[s]] for s in plan.model_strategies}
            if panel is not None
            else {}
        ),
        fingerprint=plan.fingerprint,
        pool=None if plan.replay or panel is None else panel.pool,
        context_pool=panel.pool if panel is not None else None,
        policy=panel.policy if panel is not None else QuorumPolicy(),
        params=(
            SamplingParams.model_validate(plan.spec.sampling_params())
            if plan.spec is not None
            else SamplingParams()
        ),
        prices=plan.prices or PriceTable({}),
        grader=plan.grader,
        adaptive=plan.options.adaptive or AdaptiveSampling(),
        answer_extract=plan.options.answer_extract,
        consensus=plan.options.consensus,
        consensus_similarity=plan.options.consensus_similarity,
        shuffle_seed=plan.shuffle_seed,
    )
    return setup, panel
