"""LangChain adapters for polyfuse.

* :class:`ChatFusion` — a LangChain chat model whose answers are fused from N candidates
  (drop-in for ``ChatOpenAI`` in chains, agents and graphs).
* :class:`LangChainBackend` — any LangChain chat model as a polyfuse backend (pool member or
  fusor) for the core engine.
* :class:`FusionNode` and its helpers (``langchain_polyfuse.graph``) — a fusion step for
  LangGraph graphs; they need ``polyfuse[langgraph]`` and are imported on first use.
* :class:`FusionMiddleware` — candidate progress and fusion records for ``create_agent``
  agents whose model is a ``ChatFusion`` (needs the ``langchain`` package).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .backends import LangChainBackend, backend_error
from .chat_models import ChatFusion

if TYPE_CHECKING:
    from ._graph_middleware import FusionAgentState, FusionMiddleware
    from .graph import (
        FusionNode,
        FusionState,
        add_records,
        fusion_retry_on,
        fusion_retry_policy,
    )

_LAZY = {
    "FusionNode": ".graph",
    "FusionState": ".graph",
    "add_records": ".graph",
    "fusion_retry_on": ".graph",
    "fusion_retry_policy": ".graph",
    "FusionAgentState": "._graph_middleware",
    "FusionMiddleware": "._graph_middleware",
}

__all__ = [
    "ChatFusion",
    "FusionAgentState",
    "FusionMiddleware",
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
    module = _LAZY.get(name)
    if module is not None:
        return getattr(import_module(module, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
