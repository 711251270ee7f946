"""LangChain adapters for polyfuse.

* :class:`ChatFusion` — a LangChain chat model whose answers are fused from N candidates
  (drop-in for ``ChatOpenAI`` in chains, agents and graphs).
* :class:`LangChainBackend` — any LangChain chat model as a polyfuse backend (pool member or
  fusor) for the core engine.
* :class:`FusionNode` and its helpers (``langchain_polyfuse.graph``) — a fusion step for
  LangGraph graphs; they need ``polyfuse[langgraph]`` and are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .backends import LangChainBackend, backend_error
from .chat_models import ChatFusion

if TYPE_CHECKING:
    from .graph import (
        FusionNode,
        FusionState,
        add_records,
        fusion_retry_on,
        fusion_retry_policy,
    )

_GRAPH_NAMES = (
    "FusionNode",
    "FusionState",
    "add_records",
    "fusion_retry_on",
    "fusion_retry_policy",
)

__all__ = [
    "ChatFusion",
    "FusionNode",
    "FusionState",
    "LangChainBackend",
    "add_records",
    "backend_error",
    "fusion_retry_on",
    "fusion_retry_policy",
]


def __getattr__(name: str) -> Any:
    """Import the LangGraph names lazily, so ``polyfuse[langchain]`` works without langgraph."""
    if name in _GRAPH_NAMES:
        return getattr(import_module(".graph", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
