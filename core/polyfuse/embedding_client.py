"""One client for OpenAI-compatible ``/v1/embeddings`` endpoints, over polyfuse's transport.

Shared by every polyfuse embeddings user (the routing :class:`~polyfuse.routing.OpenAIEmbedder`
and the LlamaIndex ``OpenAICompatibleEmbedding``), so that each sends the same request, retries
with the same :class:`~polyfuse.transport.RetryPolicy` (429/5xx, timeouts and dropped
connections, honouring ``Retry-After``; the retries are logged and counted on the final error's
``retries``), raises the same :mod:`polyfuse.errors` types and checks the reply with
:func:`~polyfuse.embedding_reply.parse_embedding_reply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from .embedding_reply import parse_embedding_reply
from .transport import HTTPTransport, JSONCaller, RetryPolicy, Timeouts, Transport

__all__ = ["EmbeddingClient"]


class EmbeddingClient:
    """POSTs texts to ``<base_url>/embeddings`` and returns their vectors in input order.

    One pool of connections per event loop (a :class:`~polyfuse.transport.JSONCaller`).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name sent with each request (and the label ``embeddings:<model>`` in
            errors and logs).
        api_key: sent as a bearer token; read only to build the header, never logged.
        dimensions: ask for shorter vectors (only for models that support it).
        headers: extra HTTP headers.
        timeout: seconds to connect, write, and wait for each read.
        max_retries: retries after the first attempt for retryable failures.
        transport: where requests go (default :class:`~polyfuse.transport.HTTPTransport`).

    Raises:
        InvalidRequestError: a header holds a line break.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: SecretStr | None = None,
        dimensions: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self.endpoint = f"embeddings:{model}"
        merged = dict(headers or {})
        if api_key is not None:
            merged["authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._caller = JSONCaller(
            transport or HTTPTransport(),
            "POST",
            f"{base_url.strip().rstrip('/')}/embeddings",
            endpoint=self.endpoint,
            headers=merged,
            timeouts=Timeouts(connect=timeout, read=timeout, write=timeout),
            policy=RetryPolicy(max_retries=max_retries),
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One request for ``texts``; their vectors, in input order.

        Raises:
            APIStatusError (and subclasses such as AuthenticationError, RateLimitError): the
                server answered with an HTTP error (after the retries, for retryable ones).
            APIConnectionError / APITimeoutError: the server could not be reached in time.
            ProtocolError: the reply is not JSON or not a well-formed embeddings reply.
        """
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return parse_embedding_reply(await self._caller(body), len(texts), endpoint=self.endpoint)

    async def aclose(self) -> None:
        """Close the running event loop's connections."""
        await self._caller.aclose()

    def __repr__(self) -> str:
        return f"EmbeddingClient({self._caller.url!r}, model={self.model!r})"
