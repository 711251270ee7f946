"""Query-level fusion (FusionFactory): routing logs, and the routers learned from them.

Needs ``pip install ".[routing]"`` (in a polyfuse checkout) (numpy, wordllama) for everything but the record
schema. See ``docs/routing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .records import ROUTING_LOG_VERSION, RoutingRecord, read_routing_log, write_routing_log

if TYPE_CHECKING:
    from .cache import EmbeddingCache, embed_texts
    from .embedders import Embedder, LocalModelEmbedder, OpenAIEmbedder, WordLlamaEmbedder
    from .evaluate import evaluate_router
    from .loaders import ModelPrice, load_llmrouter, load_prices, records_from_fusion
    from .pool import RoutedPool
    from .routers import KnnRouter, MfRouter, MlpRouter, Router, load_router
    from .scenarios import SCENARIOS, Scenario, scenario_labels, scenario_scores
    from .selector import CostAwareSelector, RouteDecision
    from .table import RoutingTable
    from .templates import (
        TemplateBuilder,
        TemplateStore,
        ThoughtTemplate,
        ThoughtTemplates,
        select_top_responses,
    )

__all__ = [
    "ROUTING_LOG_VERSION",
    "CostAwareSelector",
    "Embedder",
    "EmbeddingCache",
    "KnnRouter",
    "LocalModelEmbedder",
    "MfRouter",
    "MlpRouter",
    "ModelPrice",
    "OpenAIEmbedder",
    "RouteDecision",
    "RoutedPool",
    "Router",
    "RoutingRecord",
    "RoutingTable",
    "SCENARIOS",
    "Scenario",
    "TemplateBuilder",
    "TemplateStore",
    "ThoughtTemplate",
    "ThoughtTemplates",
    "WordLlamaEmbedder",
    "embed_texts",
    "evaluate_router",
    "load_llmrouter",
    "load_prices",
    "load_router",
    "read_routing_log",
    "records_from_fusion",
    "scenario_labels",
    "scenario_scores",
    "select_top_responses",
    "write_routing_log",
]

_LAZY = {
    "CostAwareSelector": "selector",
    "RouteDecision": "selector",
    "RoutedPool": "pool",
    "Embedder": "embedders",
    "LocalModelEmbedder": "embedders",
    "OpenAIEmbedder": "embedders",
    "WordLlamaEmbedder": "embedders",
    "EmbeddingCache": "cache",
    "embed_texts": "cache",
    "KnnRouter": "routers",
    "MlpRouter": "routers",
    "MfRouter": "routers",
    "Router": "routers",
    "load_router": "routers",
    "ModelPrice": "loaders",
    "load_llmrouter": "loaders",
    "load_prices": "loaders",
    "records_from_fusion": "loaders",
    "RoutingTable": "table",
    "SCENARIOS": "scenarios",
    "Scenario": "scenarios",
    "scenario_labels": "scenarios",
    "scenario_scores": "scenarios",
    "evaluate_router": "evaluate",
    "TemplateBuilder": "templates",
    "TemplateStore": "templates",
    "ThoughtTemplate": "templates",
    "ThoughtTemplates": "templates",
    "select_top_responses": "templates",
}


def __getattr__(name: str) -> object:
    # numpy-backed parts load on first use, so the record schema works without the extra.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'polyfuse.routing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
