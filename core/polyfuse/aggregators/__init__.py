"""Aggregators: how N candidates become one answer.

Custom aggregators with prompts of their own render untrusted text with
:func:`render_conversation`, :func:`render_candidates` and :func:`neutralise`, so that a
request or a candidate cannot forge the prompt's delimiters or role lines.
"""

from ._render import neutralise, render_candidate_body, render_candidates, render_conversation
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
    "neutralise",
    "parse_judge_score",
    "parse_usc_choice",
    "render_candidate_body",
    "render_candidates",
    "render_conversation",
]
