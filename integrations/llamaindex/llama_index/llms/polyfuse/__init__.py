"""polyfuse for LlamaIndex LLMs.

- :class:`FusionLLM`: a polyfuse fusion as a chat-native, function-calling LlamaIndex LLM
  (usable as ``Settings.llm``).
- :class:`LlamaIndexBackend`: any LlamaIndex LLM as a polyfuse backend, so it can be a pool
  member or the fusor; :func:`as_backend` picks it when needed.
- Instrumentation events for fusion progress (:mod:`llama_index.llms.polyfuse.events`).
- Building blocks for other LlamaIndex components that run fusions (the response synthesizer
  uses them): :func:`to_polyfuse_messages`, :func:`sampling_params` and
  :class:`FusionEventConsumer`.
"""

from __future__ import annotations

from ._convert import sampling_params, to_polyfuse_messages
from ._stream import FusionEventConsumer
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
    "FusionEventConsumer",
    "FusionLLM",
    "LlamaIndexBackend",
    "as_backend",
    "sampling_params",
    "to_polyfuse_messages",
]
