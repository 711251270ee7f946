"""A real VectorStoreIndex over local documents, embedded by the embedded llama.cpp model
(SmolLM2 GGUF from PyPI, served on 127.0.0.1, offline), queried through RetrieverQueryEngine
with FusionSynthesizer: drafts from the fake server, and one run entirely on the local model."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from li_helpers import first_sentence
from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document

from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding
from llama_index.response_synthesizers.polyfuse import (
    FusionSynthesizer,
    cited_nodes,
    fusion_details,
)
from polyfuse import OpenAIEndpoint
from polyfuse.testing import FakeOpenAIServer

pytestmark = pytest.mark.local_model

QUESTION = "When was the Eiffel Tower completed?"


@pytest.fixture(scope="module")
def index(local_model: Any, documents: list[Document]) -> VectorStoreIndex:
    embed = OpenAICompatibleEmbedding(local_model.base_url, model_name=local_model.model)
    return VectorStoreIndex.from_documents(documents, embed_model=embed)


def check_cited(response: Any, text: str) -> None:
    """Each ``[n]`` follows the first sentence of ``source_nodes[n - 1]``, a retrieved node."""
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", text)]
    assert numbers
    for n in numbers:
        body = response.source_nodes[n - 1].node.get_content()
        assert first_sentence(body)[:-1] + f" [{n}]" in text
    assert {id(n) for n in cited_nodes(response, text)} <= {id(n) for n in response.source_nodes}


def test_local_embeddings_are_real_vectors(local_model: Any) -> None:
    embed = OpenAICompatibleEmbedding(local_model.base_url, model_name=local_model.model)
    first, again, other = embed.get_text_embedding_batch(
        ["The Eiffel Tower is in Paris.", "The Eiffel Tower is in Paris.", "Bananas are berries."]
    )
    assert len(first) == 576  # SmolLM2-135M's hidden size
    assert sum(x * x for x in first) == pytest.approx(1.0, abs=1e-3)  # L2-normalised
    assert first == pytest.approx(again)
    assert first != pytest.approx(other)


def test_sync_query_over_the_vector_index(
    index: VectorStoreIndex, rag_fake: FakeOpenAIServer, endpoints: Callable[..., OpenAIEndpoint]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=3)
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=3), response_synthesizer=synth
    )
    response = engine.query(QUESTION)

    assert len(response.source_nodes) == 3
    assert all(n.score is not None for n in response.source_nodes)
    check_cited(response, response.response)
    details = fusion_details(response)
    assert [d["status"] for d in details["drafts"]] == ["ok", "ok", "ok"]
    assert details["citations"]["invalid"] == []


async def test_async_and_streaming_queries(
    index: VectorStoreIndex, rag_fake: FakeOpenAIServer, endpoints: Callable[..., OpenAIEndpoint]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2, context="partition", streaming=True)
    engine = index.as_query_engine(llm=synth.llm, response_synthesizer=synth, similarity_top_k=4)
    response = await engine.aquery(QUESTION)
    assert isinstance(response, AsyncStreamingResponse)
    text = "".join([d async for d in response.async_response_gen()])
    check_cited(response, text)
    assert sorted(d["sources"] for d in fusion_details(response)["drafts"]) == [[1, 3], [2, 4]]

    sync_synth = FusionSynthesizer(endpoints(), num_drafts=2, streaming=True)
    sync_engine = index.as_query_engine(
        llm=sync_synth.llm, response_synthesizer=sync_synth, similarity_top_k=2
    )
    streamed = sync_engine.query(QUESTION)
    assert isinstance(streamed, StreamingResponse)
    check_cited(streamed, "".join(streamed.response_gen))


def test_everything_local(index: VectorStoreIndex, local_model: Any) -> None:
    """Drafts and fusor on the embedded model too: real (toy-quality) text, real usage."""
    synth = FusionSynthesizer(
        local_model.endpoint(), num_drafts=2, draft_params={"max_tokens": 48, "temperature": 0.7}
    )
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=2), response_synthesizer=synth
    )
    response = engine.query(QUESTION)

    details = fusion_details(response)
    assert response.response.strip()
    assert [d["status"] for d in details["drafts"]] == ["ok", "ok"]
    assert all(d["text"].strip() for d in details["drafts"])
    assert details["usage"]["total"]["completion_tokens"] > 0
    assert details["usage"]["total"]["calls"] == 3
