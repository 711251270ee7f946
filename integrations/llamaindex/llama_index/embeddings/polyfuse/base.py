"""``OpenAICompatibleEmbedding``: embeddings from any OpenAI-compatible ``/v1/embeddings``."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr

from polyfuse.embedding_client import EmbeddingClient
from polyfuse.sync import run_sync
from polyfuse.transport import Transport

__all__ = ["OpenAICompatibleEmbedding"]


class OpenAICompatibleEmbedding(BaseEmbedding):
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Works with llama.cpp (``--embeddings``, including polyfuse's embedded local model), vLLM,
    Ollama, TEI, LM Studio and hosted APIs, without the ``openai`` package. Texts are sent in
    batches of ``embed_batch_size``; 429/5xx and connection failures are retried with backoff
    (honouring ``Retry-After``, with polyfuse's one retry policy); failures raise
    :mod:`polyfuse.errors` types. Requests go through polyfuse's transport (TLS ``verify`` and
    proxies as httpx reads them from the environment); one pool of connections per event loop;
    the sync methods run on polyfuse's background loop.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model_name: the model name sent with each request.
        api_key: sent as a bearer token; kept as a ``SecretStr`` and never logged.
        dimensions: ask for shorter vectors (only for models that support it).
        query_prefix / text_prefix: prepended to queries / documents (e5, nomic, bge
            instructions).
        timeout: seconds per request.
        max_retries: retries after the first attempt for retryable failures.
        headers: extra HTTP headers.
        transport: where requests go (default :class:`polyfuse.transport.HTTPTransport`;
            :class:`polyfuse.transport.MockTransport` in tests).

    Example::

        from llama_index.core import VectorStoreIndex
        from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding

        embed = OpenAICompatibleEmbedding("http://127.0.0.1:8080/v1", model_name="bge-small")
        index = VectorStoreIndex.from_documents(docs, embed_model=embed)
    """

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8080/v1.")
    api_key: SecretStr | None = Field(default=None, description="Bearer token.", exclude=True)
    dimensions: int | None = Field(default=None, gt=0, description="Requested vector size.")
    query_prefix: str = Field(default="", description="Prepended to every query.")
    text_prefix: str = Field(default="", description="Prepended to every document text.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(default=2, ge=0, description="Retries for retryable failures.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")

    _client: EmbeddingClient | None = PrivateAttr(default=None)
    _transport: Transport | None = PrivateAttr(default=None)

    def __init__(
        self,
        base_url: str,
        model_name: str = "unknown",
        *,
        transport: Transport | None = None,
        **kwargs: Any,
    ) -> None:
        data: dict[str, Any] = {
            "base_url": base_url.strip().rstrip("/"),
            "model_name": model_name,
            **kwargs,
        }
        super().__init__(**data)
        self._transport = transport

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "PolyfuseOpenAICompatibleEmbedding"

    def to_payload(self) -> dict[str, Any]:
        """What instrumentation may show: no key, no headers."""
        return {**super().to_payload(), "base_url": self.base_url}

    # ------------------------------------------------------------------ BaseEmbedding API

    def _get_query_embedding(self, query: str) -> Embedding:
        return run_sync(self._aget_query_embedding(query))

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._embed([self.query_prefix + query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return run_sync(self._aget_text_embedding(text))

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._embed([self.text_prefix + text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return run_sync(self._aget_text_embeddings(texts))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._embed([self.text_prefix + t for t in texts])

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------------ HTTP

    def _embedding_client(self) -> EmbeddingClient:
        if self._client is None:
            self._client = EmbeddingClient(
                self.base_url,
                self.model_name,
                api_key=self.api_key,
                dimensions=self.dimensions,
                headers=self.headers,
                timeout=self.timeout,
                max_retries=self.max_retries,
                transport=self._transport,
            )
        return self._client

    async def _embed(self, texts: list[str]) -> list[Embedding]:
        return await self._embedding_client().embed(texts)
