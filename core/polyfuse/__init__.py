"""polyfuse: make one better answer out of N.

Sample N candidate answers from one model or a panel of models behind OpenAI-compatible
endpoints, then fuse them into one (Fusion-of-N) — or select with Best-of-N, majority vote,
universal self-consistency, or Mixture-of-Agents.
"""

from __future__ import annotations

import logging

from .aggregators import (
    Aggregate,
    AggregationContext,
    Aggregator,
    BestOfN,
    FunctionScorer,
    Fuse,
    LLMJudge,
    MajorityVote,
    MixtureOfAgents,
    RewardModelScorer,
    Scorer,
    ScoreResult,
    UniversalSelfConsistency,
)
from .backends import Backend, Completion, EndpointConfig, OpenAIEndpoint, StreamDelta
from .errors import (
    AggregationError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendError,
    BadRequestError,
    InvalidRequestError,
    NoCandidatesError,
    NotFoundError,
    PolyfuseError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from .events import (
    AggregationStarted,
    AnswerRestarted,
    CandidateFailed,
    CandidateFinished,
    CandidateStarted,
    FusedToken,
    FusionDone,
    FusionEvent,
)
from .fusion import Fusion
from .messages import (
    AssistantMessage,
    ChatRequest,
    Message,
    ModelRole,
    SamplingOptions,
    SamplingParams,
    ToolCall,
    ToolCallFunction,
)
from .policy import QuorumPolicy
from .pool import Pool, PoolMember
from .prompts import PromptTemplate, load_prompt
from .redaction import LOG_FILTER
from .results import AggregationRecord, CallRecord, Candidate, ErrorInfo, FusionResult
from .spec import FusionOptions, FusionSpec
from .timeouts import TimeoutLike
from .usage import Usage, UsageByRole

__version__ = "0.1.0"

logging.getLogger("polyfuse").addHandler(logging.NullHandler())
# Credentials (Bearer tokens, api_key=... pairs) are scrubbed from polyfuse's log records;
# `polyfuse serve` also registers its keys (see polyfuse.redaction).
logging.getLogger("polyfuse").addFilter(LOG_FILTER)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Aggregate",
    "AggregationContext",
    "AggregationError",
    "AggregationRecord",
    "AggregationStarted",
    "Aggregator",
    "AnswerRestarted",
    "AssistantMessage",
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BadRequestError",
    "BestOfN",
    "CallRecord",
    "Candidate",
    "CandidateFailed",
    "CandidateFinished",
    "CandidateStarted",
    "ChatRequest",
    "Completion",
    "EndpointConfig",
    "ErrorInfo",
    "FunctionScorer",
    "Fuse",
    "FusedToken",
    "Fusion",
    "FusionDone",
    "FusionEvent",
    "FusionOptions",
    "FusionResult",
    "FusionSpec",
    "InvalidRequestError",
    "LLMJudge",
    "MajorityVote",
    "Message",
    "MixtureOfAgents",
    "ModelRole",
    "NoCandidatesError",
    "NotFoundError",
    "OpenAIEndpoint",
    "PolyfuseError",
    "Pool",
    "PoolMember",
    "PromptTemplate",
    "ProtocolError",
    "QuorumPolicy",
    "RateLimitError",
    "RewardModelScorer",
    "SamplingOptions",
    "SamplingParams",
    "ScoreResult",
    "Scorer",
    "ServerError",
    "StreamDelta",
    "TimeoutLike",
    "ToolCall",
    "ToolCallFunction",
    "UniversalSelfConsistency",
    "Usage",
    "UsageByRole",
    "__version__",
    "load_prompt",
]
