"""The one ``/v1/embeddings`` reply parser shared by the routing embedders and LlamaIndex."""

from __future__ import annotations

from typing import Any

import pytest

from polyfuse.embedding_reply import parse_embedding_reply
from polyfuse.errors import ProtocolError


def _reply(*vectors: Any, indexes: list[Any] | None = None) -> dict[str, Any]:
    order = indexes if indexes is not None else list(range(len(vectors)))
    return {"data": [{"index": i, "embedding": v} for i, v in zip(order, vectors, strict=True)]}


def test_vectors_come_back_in_input_order_as_floats() -> None:
    reply = _reply([3, 4], [1.5, 2.5], indexes=[1, 0])
    assert parse_embedding_reply(reply, 2, endpoint="e") == [[1.5, 2.5], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("reply", "expected", "message"),
    [
        ({"data": [{"embedding": [1.0]}]}, 2, "asked for 2 embeddings, got 1 'data' items"),
        (["not", "an", "object"], 1, "asked for 1 embeddings, got no 'data' items"),
        (_reply([[1.0, 2.0], [3.0, 4.0]]), 1, "one vector per token"),
        (_reply([]), 1, "missing or empty"),
        ({"data": [{"index": 0}]}, 1, "missing or empty"),
        (_reply([1.0, "x"]), 1, "non-numbers"),
        (_reply([True, 1.0]), 1, "non-numbers"),
        (_reply([1.0, 2.0], [1.0]), 2, "different lengths"),
    ],
)
def test_a_malformed_reply_is_a_protocol_error_naming_the_endpoint(
    reply: Any, expected: int, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_embedding_reply(reply, expected, endpoint="emb-endpoint")
    assert caught.value.endpoint == "emb-endpoint"
