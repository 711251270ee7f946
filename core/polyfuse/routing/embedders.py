"""Query embedders for routers and thought templates, pluggable.

* :class:`WordLlamaEmbedder` (default): ``wordllama``'s static token embeddings (256 dims, MIT),
  whose weights ship inside the wheel — it works offline on a fresh machine, embeds thousands
  of queries per second on one core, and adds well under a millisecond to routing one query.
  Chosen over sentence-transformers models because those need torch and a model download.
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM, llama.cpp,
  Ollama, TEI, hosted APIs), through polyfuse's shared transport and retry policy.
* :class:`LocalModelEmbedder`: polyfuse's embedded llama.cpp model started with
  ``embeddings=True``.

Every embedder returns L2-normalised float32 rows, so a dot product is a cosine similarity, and
has an ``id`` that names the model; :class:`EmbeddingCache` keys stored vectors by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from ..embedding_client import EmbeddingClient
from ..errors import InvalidRequestError
from ..transport import CertTypes, HTTPTransport, Transport, VerifyTypes

if TYPE_CHECKING:
    from ..local import LocalModel

__all__ = [
    "Embedder",
    "Matrix",
    "LocalModelEmbedder",
    "OpenAIEmbedder",
    "WordLlamaEmbedder",
    "load_wordllama",
    "normalize_rows",
]

Matrix = npt.NDArray[np.float32]
"""A 2-D float32 array: one row per text."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    @property
    def id(self) -> str:
        """Names the model and its settings; vectors from different ids never mix."""
        ...

    async def aembed(self, texts: list[str]) -> Matrix:
        """Embed ``texts``; returns an array of shape ``(len(texts), dims)``."""
        ...


def normalize_rows(vectors: npt.ArrayLike) -> Matrix:
    """Scale each row to unit length (zero rows stay zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidRequestError(f"expected a 2-D array of embeddings, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


@lru_cache(maxsize=4)
def load_wordllama(config: str = "l2_supercat", dim: int = 256) -> Any:
    """Load ``wordllama`` from the weights inside its wheel; never downloads."""
    try:
        import wordllama
    except ImportError:
        raise InvalidRequestError(
            "the default embedder needs wordllama: pip install '.[routing]' in a polyfuse checkout"
        ) from None
    package = Path(wordllama.__file__).parent
    try:
        return wordllama.WordLlama.load(
            config=config, dim=dim, cache_dir=package, disable_download=True
        )
    except (FileNotFoundError, ValueError, AttributeError) as exc:
        raise InvalidRequestError(
            f"wordllama has no offline weights for config={config!r} dim={dim} ({exc}); "
            "use config='l2_supercat' with dim=256, whose weights ship in the wheel"
        ) from None


class WordLlamaEmbedder:
    """The default, offline embedder: ``wordllama`` (weights in its wheel).

    Args:
        config: the wordllama configuration (``l2_supercat`` ships in the wheel).
        dim: vector size (256 ships in the wheel).
    """

    def __init__(self, config: str = "l2_supercat", dim: int = 256) -> None:
        self.config = config
        self.dim = dim
        self._model = load_wordllama(config, dim)

    @property
    def id(self) -> str:
        """``wordllama:<config>:<dim>``."""
        return f"wordllama:{self.config}:{self.dim}"

    def embed(self, texts: list[str]) -> Matrix:
        """Embed synchronously (pure CPU; microseconds per text)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(self._model.embed(texts, norm=False))

    async def aembed(self, texts: list[str]) -> Matrix:
        """Embed ``texts`` (runs inline: it is faster than a thread hop)."""
        return self.embed(texts)

    def __repr__(self) -> str:
        return f"WordLlamaEmbedder({self.config!r}, dim={self.dim})"


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Requests go through polyfuse's one transport and retry policy (see
    :mod:`polyfuse.transport` and :class:`polyfuse.embedding_client.EmbeddingClient`, which the
    LlamaIndex embedding shares): 429/5xx, timeouts and dropped connections are retried
    ``max_retries`` times with backoff (honouring ``Retry-After``), each retry logged and counted
    on the final error's ``retries``; failures raise :mod:`polyfuse.errors` types (a bad key:
    :class:`~polyfuse.errors.AuthenticationError`). One pool of connections per event loop.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name sent with each request (part of :attr:`id`).
        api_key: sent as a bearer token; kept as a ``SecretStr``, never logged or shown.
        batch_size: texts per request.
        timeout: seconds to connect, write, and wait for each read.
        max_retries: retries after the first attempt for retryable failures.
        dimensions: ask for shorter vectors (only for models that support it; part of
            :attr:`id`).
        headers: extra HTTP headers (no line breaks: header injection is refused).
        verify / cert / trust_env: TLS verification, a client certificate, and whether the
            environment's proxies and CA settings apply; as for :class:`~polyfuse.OpenAIEndpoint`
            (they configure the default :class:`polyfuse.transport.HTTPTransport`).
        transport: where requests go instead (then pass ``verify``/``cert`` to it);
            :class:`polyfuse.transport.MockTransport` answers from a function in tests.

    Raises:
        InvalidRequestError: a setting is invalid (the message names it).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | SecretStr | None = None,
        batch_size: int = 64,
        timeout: float = 60.0,
        max_retries: int = 2,
        dimensions: int | None = None,
        headers: Mapping[str, str] | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        transport: Transport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"base_url must start with http:// or https:// (got {base_url!r})"
            )
        if batch_size < 1 or max_retries < 0 or timeout <= 0:
            raise InvalidRequestError("batch_size >= 1, max_retries >= 0 and timeout > 0 needed")
        if dimensions is not None and dimensions < 1:
            raise InvalidRequestError(f"dimensions must be >= 1 (got {dimensions})")
        if transport is not None and (verify is not True or cert is not None):
            raise InvalidRequestError(
                "pass verify= and cert= to the transport, not to OpenAIEmbedder, "
                "when you give transport="
            )
        self.base_url = base_url.strip().rstrip("/")
        self.model = model
        self.api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.dimensions = dimensions
        self.transport: Transport = transport or HTTPTransport(
            verify=verify, cert=cert, trust_env=trust_env
        )
        self._client = EmbeddingClient(
            self.base_url,
            model,
            api_key=self.api_key,
            dimensions=dimensions,
            headers=headers,
            timeout=timeout,
            max_retries=max_retries,
            transport=self.transport,
        )

    @property
    def id(self) -> str:
        """``openai:<base_url>:<model>`` (``:<dimensions>`` appended when asked for)."""
        suffix = f":{self.dimensions}" if self.dimensions is not None else ""
        return f"openai:{self.base_url}:{self.model}{suffix}"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.base_url!r}, model={self.model!r})"

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._client.aclose()

    async def aembed(self, texts: list[str]) -> Matrix:
        """Embed ``texts`` in batches of :attr:`batch_size`."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows.extend(await self._client.embed(texts[start : start + self.batch_size]))
        if not rows:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        return normalize_rows(rows)


class LocalModelEmbedder(OpenAIEmbedder):
    """The embedded llama.cpp model in embeddings mode.

    Example::

        with LocalModel(embeddings=True) as local:
            embedder = LocalModelEmbedder(local)
    """

    def __init__(self, model: LocalModel, *, batch_size: int = 16) -> None:
        if not model.embeddings:
            raise InvalidRequestError(
                "the local model does not serve embeddings; start it with "
                "LocalModel(embeddings=True)"
            )
        # the model listens on 127.0.0.1: never through a proxy from the environment
        super().__init__(model.base_url, model.model, batch_size=batch_size, trust_env=False)

    @property
    def id(self) -> str:
        """``local:<model>`` (the port changes between runs; the model does not)."""
        return f"local:{self.model}"
