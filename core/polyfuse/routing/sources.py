"""Where the CLI's routing logs and embedders come from (shared by ``route`` and ``templates``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InvalidRequestError
from .cache import EmbeddingCache, embed_texts
from .embedders import Embedder, Matrix, OpenAIEmbedder, WordLlamaEmbedder
from .loaders import DEFAULT_OUTPUT_TOKENS, ModelPrice, load_llmrouter, load_prices
from .records import RoutingRecord, read_routing_log

__all__ = ["embed_with_cache", "load_logs", "make_embedder"]


def load_logs(
    logs: Sequence[Path],
    *,
    llmrouter: Path | None,
    split: str,
    prices: Path | None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[RoutingRecord], dict[str, ModelPrice]]:
    """Records from JSONL routing logs or an LLMRouter folder's ``split``, and the prices."""
    if llmrouter is None and not logs:
        raise InvalidRequestError(
            "give routing logs (JSONL files) or --llmrouter FOLDER with LLMRouter's files"
        )
    if llmrouter is not None and logs:
        raise InvalidRequestError("give either routing logs or --llmrouter, not both")
    price_map: dict[str, ModelPrice] = {}
    if llmrouter is not None:
        records = load_llmrouter(
            llmrouter, split, output_tokens=output_tokens, on_progress=on_progress
        )
        price_map = load_prices(prices or llmrouter / "default_llm.json")
        return records, price_map
    records = []
    for path in logs:
        records.extend(read_routing_log(path))
    if prices is not None:
        price_map = load_prices(prices)
    return records, price_map


def make_embedder(
    embed_url: str | None, embed_model: str | None, *, api_key: str | None = None
) -> Embedder:
    """wordllama (default, offline), or an OpenAI-compatible ``/v1/embeddings`` endpoint
    (``api_key`` is sent as its bearer token and kept as a ``SecretStr``)."""
    if embed_url is None:
        if embed_model is not None or api_key is not None:
            raise InvalidRequestError(
                "--embed-model and --embed-api-key need --embed-url (the endpoint serving it)"
            )
        return WordLlamaEmbedder()
    if embed_model is None:
        raise InvalidRequestError("--embed-url needs --embed-model (the model to ask for)")
    return OpenAIEmbedder(embed_url, embed_model, api_key=api_key)


def embed_with_cache(
    embedder: Embedder,
    texts: list[str],
    cache: Path | None,
    on_progress: Callable[[int], None] | None = None,
) -> Matrix:
    """Embed texts through the on-disk cache (default ``~/.cache/polyfuse``)."""
    return asyncio.run(
        embed_texts(embedder, texts, cache=EmbeddingCache(cache), on_progress=on_progress)
    )
