"""Aggregators: how N candidates become one answer."""

from .base import Aggregate, AggregationContext, Aggregator, call_model
from .best_of_n import BestOfN
from .fuse import Fuse
from .moa import MixtureOfAgents
from .scorers import (
    FunctionScorer,
    LLMJudge,
    RewardModelScorer,
    Scorer,
    ScoreResult,
    parse_judge_score,
)
from .usc import UniversalSelfConsistency, parse_usc_choice
from .vote import MajorityVote, extract_answer_tag, extract_boxed, extract_last_number

__all__ = [
    "Aggregate",
    "AggregationContext",
    "Aggregator",
    "BestOfN",
    "FunctionScorer",
    "Fuse",
    "LLMJudge",
    "MajorityVote",
    "MixtureOfAgents",
    "RewardModelScorer",
    "ScoreResult",
    "Scorer",
    "UniversalSelfConsistency",
    "call_model",
    "extract_answer_tag",
    "extract_boxed",
    "extract_last_number",
    "parse_judge_score",
    "parse_usc_choice",
]
