"""``OpenAICompatibleEmbedding``: embeddings from any OpenAI-compatible ``/v1/embeddings``."""

from __future__ import annotations

import asyncio
import random
import weakref
from typing import Any

import httpx
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr

from polyfuse import APIConnectionError, APITimeoutError, BackendError, ProtocolError
from polyfuse.backends import error_message, retry_after_seconds
from polyfuse.errors import status_error_for
from polyfuse.sync import run_sync

__all__ = ["OpenAICompatibleEmbedding"]


class OpenAICompatibleEmbedding(BaseEmbedding):
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint over httpx.

    Works with llama.cpp (``--embeddings``, including polyfuse's embedded local model), vLLM,
    Ollama, TEI, LM Studio and hosted APIs, without the ``openai`` package. Texts are sent in
    batches of ``embed_batch_size``; 429/5xx and connection failures are retried with backoff
    (honouring ``Retry-After``); failures raise :mod:`polyfuse.errors` types. One pooled
    client per event loop; the sync methods run on polyfuse's background loop.

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

    _clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = PrivateAttr(
        default_factory=weakref.WeakKeyDictionary
    )

    def __init__(self, base_url: str, model_name: str = "unknown", **kwargs: Any) -> None:
        data: dict[str, Any] = {
            "base_url": base_url.strip().rstrip("/"),
            "model_name": model_name,
            **kwargs,
        }
        super().__init__(**data)

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
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ HTTP

    @property
    def _label(self) -> str:
        return f"embeddings:{self.model_name}"

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            headers = {"content-type": "application/json", **self.headers}
            if self.api_key is not None:
                headers["authorization"] = f"Bearer {self.api_key.get_secret_value()}"
            client = httpx.AsyncClient(headers=headers, timeout=self.timeout)
            self._clients[loop] = client
        return client

    async def _embed(self, texts: list[str]) -> list[Embedding]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "input": texts,
            "encoding_format": "float",
        }
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        for attempt in range(self.max_retries + 1):
            try:
                return await self._post(body, len(texts))
            except BackendError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    raise
                wait = getattr(exc, "retry_after", None)
                await asyncio.sleep(
                    wait if wait is not None else 0.5 * 2**attempt * random.random()
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, body: dict[str, Any], expected: int) -> list[Embedding]:
        try:
            response = await self._client().post(f"{self.base_url}/embeddings", json=body)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"timed out ({type(exc).__name__})", endpoint=self._label
            ) from None
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})", endpoint=self._label
            ) from None
        if response.status_code >= 400:
            message, decoded = error_message(response.content, response.status_code)
            raise status_error_for(
                response.status_code,
                message,
                endpoint=self._label,
                body=decoded,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        return _parse(response, expected, self._label)


def _parse(response: httpx.Response, expected: int, label: str) -> list[Embedding]:
    try:
        data = response.json()
    except ValueError:
        raise ProtocolError("the embeddings response is not JSON", endpoint=label) from None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        got = len(items) if isinstance(items, list) else "no"
        raise ProtocolError(
            f"asked for {expected} embeddings, got {got} 'data' items", endpoint=label
        )
    ordered = sorted(items, key=_index_of)
    vectors: list[Embedding] = []
    for item in ordered:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list) and vector and isinstance(vector[0], list):
            raise ProtocolError(
                "the server returned one vector per token; start it with pooling "
                "(llama.cpp: --pooling mean) to get one vector per text",
                endpoint=label,
            )
        if not isinstance(vector, list) or not vector:
            raise ProtocolError("an embedding is missing or empty", endpoint=label)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise ProtocolError("an embedding holds non-numbers", endpoint=label)
        vectors.append([float(x) for x in vector])
    return vectors


def _index_of(item: Any) -> int:
    """An embedding item's position (``index``), 0 when the server leaves it out."""
    return item.get("index", 0) if isinstance(item, dict) else 0
