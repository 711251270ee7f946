"""Strategy names → aggregators: the one place a name like ``"best-of-n"`` becomes an object.

Presets files, ``ChatFusion``, ``polyfuse ask``/``serve``/``distill`` and :class:`FusionSpec`
all name their aggregator this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from ..backends.base import Backend
from ..errors import InvalidRequestError
from .base import Aggregator
from .best_of_n import BestOfN
from .fuse import Fuse
from .moa import MixtureOfAgents
from .scorers import LLMJudge
from .usc import UniversalSelfConsistency
from .vote import MajorityVote

__all__ = ["STRATEGIES", "VOTE_EXTRACTORS", "Strategy", "VoteExtractor", "build_aggregator"]

Strategy = Literal["fuse", "best-of-n", "vote", "usc", "moa"]
"""``fuse`` (Fusion-of-N), ``best-of-n`` (an LLM judge picks), ``vote`` (majority answer),
``usc`` (universal self-consistency: an LLM picks the most consistent) or ``moa``
(Mixture-of-Agents)."""

STRATEGIES: tuple[str, ...] = get_args(Strategy)

VoteExtractor = Literal["last_number", "boxed", "answer_tag", "exact", "tool_calls"]
"""What ``vote`` compares across candidates."""

VOTE_EXTRACTORS: tuple[str, ...] = get_args(VoteExtractor)


def build_aggregator(
    strategy: str,
    backend: Backend,
    *,
    vote_extract: str = "last_number",
    moa_layers: int = 2,
    fusor_params: Mapping[str, Any] | None = None,
    judge_params: Mapping[str, Any] | None = None,
) -> Aggregator:
    """The aggregator for a strategy name, using ``backend`` as its model where it needs one.

    ``fusor_params`` go to the fusor (``fuse``) and the MoA aggregator; ``judge_params`` to the
    Best-of-N judge and the USC selector (which otherwise keep their own defaults).
    """
    if strategy == "fuse":
        return Fuse(backend, params=dict(fusor_params or {}))
    if strategy == "best-of-n":
        return BestOfN(LLMJudge(backend, params=dict(judge_params or {}) or None))
    if strategy == "vote":
        if vote_extract not in VOTE_EXTRACTORS:
            raise InvalidRequestError(
                f"unknown vote extractor {vote_extract!r}; use one of {', '.join(VOTE_EXTRACTORS)}"
            )
        return MajorityVote(vote_extract)  # type: ignore[arg-type]
    if strategy == "usc":
        return UniversalSelfConsistency(backend, params=dict(judge_params or {}) or None)
    if strategy == "moa":
        return MixtureOfAgents(backend, layers=moa_layers, params=dict(fusor_params or {}))
    raise InvalidRequestError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
