"""The reply of an OpenAI-compatible ``/v1/embeddings`` endpoint, checked and in input order.

One parser for every polyfuse embeddings client (the routing embedders and the LlamaIndex
embedding), so that each refuses a malformed reply with the same :class:`ProtocolError`.
"""

from __future__ import annotations

from typing import Any

from .errors import ProtocolError

__all__ = ["parse_embedding_reply"]


def parse_embedding_reply(data: Any, expected: int, *, endpoint: str) -> list[list[float]]:
    """The ``expected`` vectors of a decoded ``/v1/embeddings`` reply, ordered by ``index``.

    Raises :class:`~polyfuse.errors.ProtocolError` (naming ``endpoint``) when the reply has
    another number of ``data`` items, an item without a non-empty list of numbers, one vector
    per token (a server started without pooling), or vectors of different lengths.

    Example::

        parse_embedding_reply({"data": [{"index": 0, "embedding": [0.1, 0.2]}]}, 1, endpoint="e")
    """
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        got = len(items) if isinstance(items, list) else "no"
        raise ProtocolError(
            f"asked for {expected} embeddings, got {got} 'data' items", endpoint=endpoint
        )
    entries: list[Any] = list(items)
    vectors: list[list[float]] = []
    for item in sorted(entries, key=_index_of):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list) and vector and isinstance(vector[0], list):
            raise ProtocolError(
                "the server returned one vector per token; start it with pooling "
                "(llama.cpp: --pooling mean) to get one vector per text",
                endpoint=endpoint,
            )
        if not isinstance(vector, list) or not vector:
            raise ProtocolError("an embedding is missing or empty", endpoint=endpoint)
        numbers: list[Any] = vector
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
            raise ProtocolError("an embedding holds non-numbers", endpoint=endpoint)
        vectors.append([float(x) for x in numbers])
    if len({len(v) for v in vectors}) > 1:
        raise ProtocolError("the embeddings have different lengths", endpoint=endpoint)
    return vectors


def _index_of(item: Any) -> int:
    """An item's position (``index``); 0 when the server leaves it out or sends a non-integer."""
    index = item.get("index", 0) if isinstance(item, dict) else 0
    return index if isinstance(index, int) else 0
