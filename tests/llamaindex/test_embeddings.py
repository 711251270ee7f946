"""OpenAICompatibleEmbedding against a real HTTP ``/v1/embeddings`` route (hashed bag-of-words
vectors on the session's fake server): batching, ordering, retries, typed errors, secrets."""

from __future__ import annotations

import socket

import pytest
from li_helpers import EmbeddingsRoute, hashed_embedding
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import Document

from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding
from polyfuse import APIConnectionError, NotFoundError, ProtocolError, ServerError


def test_index_build_batches_and_keeps_order(
    embeddings_route: EmbeddingsRoute, fake_url: str, documents: list[Document]
) -> None:
    embed = OpenAICompatibleEmbedding(fake_url, model_name="hashed", embed_batch_size=2)
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)

    batches = [r["input"] for r in embeddings_route.requests]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert {r["model"] for r in embeddings_route.requests} == {"hashed"}
    stored = index.vector_store.to_dict()["embedding_dict"]
    for node_id, node in index.docstore.docs.items():
        assert stored[node_id] == pytest.approx(
            hashed_embedding(node.get_content(metadata_mode="embed"))  # type: ignore[arg-type]
        )
    top = index.as_retriever(similarity_top_k=1).retrieve("Mona Lisa museum Louvre")
    assert top[0].node.metadata["file_name"] == "louvre.txt"


async def test_async_and_prefixes(embeddings_route: EmbeddingsRoute, fake_url: str) -> None:
    embed = OpenAICompatibleEmbedding(
        fake_url,
        model_name="hashed",
        query_prefix="query: ",
        text_prefix="passage: ",
        dimensions=64,
    )
    query = await embed.aget_query_embedding("tall tower")
    texts = await embed.aget_text_embedding_batch(["iron tower", "yellow fruit"])

    assert query == pytest.approx(hashed_embedding("query: tall tower"))
    assert texts[1] == pytest.approx(hashed_embedding("passage: yellow fruit"))
    assert embeddings_route.requests[0]["input"] == ["query: tall tower"]
    assert embeddings_route.requests[1]["input"] == ["passage: iron tower", "passage: yellow fruit"]
    assert embeddings_route.requests[0]["dimensions"] == 64
    await embed.aclose()


def test_server_errors_are_retried_then_raised(
    embeddings_route: EmbeddingsRoute, fake_url: str
) -> None:
    embed = OpenAICompatibleEmbedding(fake_url, model_name="hashed", max_retries=1)
    embeddings_route.status, embeddings_route.failures = 503, 1
    assert embed.get_text_embedding("tower") == pytest.approx(hashed_embedding("tower"))
    assert len(embeddings_route.requests) == 2

    embeddings_route.failures = 5
    with pytest.raises(ServerError, match="embedding backend down"):
        embed.get_text_embedding("tower")


def test_protocol_and_http_errors(embeddings_route: EmbeddingsRoute, fake_url: str) -> None:
    embeddings_route.shape = "short"
    embed = OpenAICompatibleEmbedding(fake_url, model_name="hashed")
    with pytest.raises(ProtocolError, match="asked for 2 embeddings, got 1"):
        embed.get_text_embedding_batch(["a tower", "a fruit"])

    wrong = OpenAICompatibleEmbedding(fake_url.removesuffix("/v1") + "/nope", model_name="x")
    with pytest.raises(NotFoundError):
        wrong.get_query_embedding("tower")


def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embed = OpenAICompatibleEmbedding(f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(APIConnectionError, match=f"127.0.0.1:{port}"):
        embed.get_query_embedding("tower")


def test_the_key_is_sent_but_never_shown(embeddings_route: EmbeddingsRoute, fake_url: str) -> None:
    embed = OpenAICompatibleEmbedding(fake_url, model_name="hashed", api_key="sk-secret-123")
    embed.get_query_embedding("tower")
    assert embeddings_route.headers[0]["authorization"] == "Bearer sk-secret-123"
    shown = f"{embed!r} {embed.to_payload()} {embed.model_dump()} {embed.to_json()}"
    assert "sk-secret-123" not in shown
    assert embed.api_key is not None
    assert embed.api_key.get_secret_value() == "sk-secret-123"
