"""polyfuse for LlamaIndex LLMs.

- :class:`FusionLLM`: a polyfuse fusion as a chat-native, function-calling LlamaIndex LLM
  (usable as ``Settings.llm``).
- :class:`LlamaIndexBackend`: any LlamaIndex LLM as a polyfuse backend, so it can be a pool
  member or the fusor; :func:`as_backend` picks it when needed.
- Instrumentation events for fusion progress (:mod:`llama_index.llms.polyfuse.events`).
"""

from __future__ import annotations

from .backend import LlamaIndexBackend, as_backend
from .base import FusionLLM
from .events import (
    FusionAggregationStartEvent,
    FusionAnswerRestartedEvent,
    FusionCandidateEndEvent,
    FusionEndEvent,
)

__all__ = [
    "FusionAggregationStartEvent",
    "FusionAnswerRestartedEvent",
    "FusionCandidateEndEvent",
    "FusionEndEvent",
    "FusionLLM",
    "LlamaIndexBackend",
    "as_backend",
]
