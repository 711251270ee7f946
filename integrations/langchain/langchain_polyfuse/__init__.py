"""LangChain adapters for polyfuse.

* :class:`ChatFusion` — a LangChain chat model whose answers are fused from N candidates
  (drop-in for ``ChatOpenAI`` in chains, agents and graphs).
* :class:`LangChainBackend` — any LangChain chat model as a polyfuse backend (pool member or
  fusor) for the core engine.
"""

from __future__ import annotations

from .backends import LangChainBackend, backend_error
from .chat_models import ChatFusion

__all__ = ["ChatFusion", "LangChainBackend", "backend_error"]
