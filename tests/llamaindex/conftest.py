"""Fixtures for the LlamaIndex tests: the fake server answering RAG prompts, local documents,
a BM25 retriever over them, the embedded local model for embeddings, and an event recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from li_helpers import DOCUMENTS, EmbeddingsRoute, EventRecorder, rag_responder
from llama_index.core import SimpleDirectoryReader
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, Document
from llama_index.retrievers.bm25 import BM25Retriever

from polyfuse import OpenAIEndpoint
from polyfuse.testing import FakeOpenAIServer


@pytest.fixture
def rag_fake(make_fake: Callable[..., FakeOpenAIServer], fake_url: str) -> FakeOpenAIServer:
    """The fake server with the scripted RAG responder (drafts cite, the fusor checks).

    It depends on ``fake_url`` so that the plain fake ``fake_url`` installs comes first.
    """
    return make_fake(responder=rag_responder)


@pytest.fixture
async def endpoints(fake_url: str) -> AsyncIterator[Callable[..., OpenAIEndpoint]]:
    """Build endpoints on the fake server (fast retries); closed at teardown."""
    made: list[OpenAIEndpoint] = []

    def build(model: str = "fake-model", **settings: Any) -> OpenAIEndpoint:
        settings.setdefault("backoff_base", 0.01)
        settings.setdefault("backoff_max", 0.05)
        endpoint = OpenAIEndpoint(fake_url, model, **settings)
        made.append(endpoint)
        return endpoint

    yield build
    for endpoint in made:
        await endpoint.aclose()


@pytest.fixture(scope="session")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[Document]:
    """The test documents, written to files and read back with SimpleDirectoryReader."""
    folder: Path = tmp_path_factory.mktemp("docs")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return SimpleDirectoryReader(str(folder)).load_data()


@pytest.fixture(scope="session")
def nodes(documents: list[Document]) -> list[BaseNode]:
    """The documents split into nodes (one per document: they are short)."""
    return SentenceSplitter(chunk_size=256).get_nodes_from_documents(documents)


@pytest.fixture
def bm25(nodes: list[BaseNode]) -> Callable[..., BM25Retriever]:
    """A BM25 retriever over the nodes (``top_k`` retrieved nodes)."""

    def build(top_k: int = 2) -> BM25Retriever:
        return BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=top_k)

    return build


@pytest.fixture
def embeddings_route(
    _fake_switch: tuple[Any, str], rag_fake: FakeOpenAIServer
) -> Iterator[EmbeddingsRoute]:
    """``/v1/embeddings`` (hashed bag of words) on the session's fake server, chat as usual."""
    switch, _ = _fake_switch
    route = EmbeddingsRoute(rag_fake)
    switch.app = route
    yield route
    switch.app = rag_fake


@pytest.fixture(scope="session")
def local_model() -> Iterator[Any]:
    """The embedded llama.cpp model, serving chat and ``/v1/embeddings``."""
    from polyfuse.local import LocalModel

    with LocalModel(slots=2, ctx_per_slot=2048, embeddings=True, name="local") as model:
        yield model


@pytest.fixture
def events() -> Iterator[EventRecorder]:
    """Records every LlamaIndex instrumentation event during the test."""
    recorder = EventRecorder()
    root = get_dispatcher()
    root.add_event_handler(recorder)
    yield recorder
    root.event_handlers.remove(recorder)
