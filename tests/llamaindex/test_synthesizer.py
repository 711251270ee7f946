"""FusionSynthesizer through RetrieverQueryEngine: drafts from the fake server over a real BM25
retriever, fused with citations that map to the real source nodes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from li_helpers import (
    SOURCE,
    UNSUPPORTED,
    EventRecorder,
    OpenAIClientLLM,
    first_sentence,
    is_fuse_request,
    rag_responder,
)
from llama_index.core import PromptTemplate
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.retrievers.bm25 import BM25Retriever
from pydantic import BaseModel

from llama_index.response_synthesizers.polyfuse import (
    ContextWindowError,
    FusionSynthesizer,
    cited_nodes,
    fusion_details,
    fusion_result,
)
from polyfuse import (
    AggregationError,
    NoCandidatesError,
    OpenAIEndpoint,
    QuorumPolicy,
)
from polyfuse.testing import FakeOpenAIServer, Fault

QUESTION = "When was the Eiffel Tower completed?"
Endpoints = Callable[..., OpenAIEndpoint]


def check_citations(response: Any, text: str | None = None) -> list[int]:
    """Every ``[n]`` in the answer follows the first sentence of ``source_nodes[n - 1]``."""
    text = text if text is not None else str(response)
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", text)]
    assert numbers, f"no citation in {text!r}"
    for n in numbers:
        node_text = response.source_nodes[n - 1].node.get_content()
        assert first_sentence(node_text)[:-1] + f" [{n}]" in text
    return numbers


def engine(synth: FusionSynthesizer, retriever: BM25Retriever) -> RetrieverQueryEngine:
    return RetrieverQueryEngine(retriever, response_synthesizer=synth)


# ---------------------------------------------------------------------------- the happy paths


def test_sync_query_fuses_cited_drafts(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=3)
    response = engine(synth, bm25(2)).query(QUESTION)

    assert isinstance(response, Response)
    assert "Eiffel Tower was completed in 1889" in response.response
    assert UNSUPPORTED not in response.response  # the fusor dropped the unsupported claim
    assert check_citations(response) == [1]
    assert [n.node.metadata["file_name"] for n in cited_nodes(response)] == ["eiffel.txt"]
    details = fusion_details(response)
    assert [d["status"] for d in details["drafts"]] == ["ok", "ok", "ok"]
    assert any(UNSUPPORTED in d["text"] for d in details["drafts"])
    assert all(d["sources"] == [1, 2] for d in details["drafts"])
    assert details["citations"] == {"cited": [1], "invalid": []}
    assert details["fusor"]["sources"] == [1, 2]
    assert details["usage"]["total"]["calls"] == 2  # one n=3 draft call + the fusor
    assert details["usage"]["aggregator"]["total_tokens"] > 0
    assert max(d["contribution"] for d in details["drafts"]) > 0
    assert fusion_result(response).content == response.response
    # the node metadata LlamaIndex puts in Response.metadata is still there
    assert {n.node.node_id for n in response.source_nodes} <= set(response.metadata)


async def test_async_query(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2)
    response = await engine(synth, bm25(3)).aquery(QUESTION)

    assert isinstance(response, Response)
    assert check_citations(response) == [1]
    assert fusion_details(response)["citations"]["cited"] == [1]


def test_streaming_query(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2, streaming=True)
    response = engine(synth, bm25(2)).query(QUESTION)

    assert isinstance(response, StreamingResponse)
    with pytest.raises(Exception, match="stream has not been read"):
        fusion_details(response)
    deltas = list(response.response_gen)
    text = "".join(deltas)
    assert len(deltas) > 3  # streamed token by token, not in one piece
    assert check_citations(response, text) == [1]
    details = fusion_details(response)  # filled once the stream ended
    assert details["citations"]["cited"] == [1]
    assert fusion_result(response).content == text


async def test_async_streaming_query(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2, streaming=True)
    response = await engine(synth, bm25(2)).aquery(QUESTION)

    assert isinstance(response, AsyncStreamingResponse)
    deltas = [delta async for delta in response.async_response_gen()]
    assert len(deltas) > 3
    assert check_citations(response, "".join(deltas)) == [1]
    assert fusion_details(response)["usage"]["total"]["calls"] == 2


def test_get_response_and_synthesize_directly(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2)
    chunks = ["The Eiffel Tower was completed in 1889. More.", "Bananas are berries."]
    text = synth.get_response(QUESTION, chunks)
    assert text == "The Eiffel Tower was completed in 1889 [1]."

    nodes = [NodeWithScore(node=TextNode(text=c), score=1.0) for c in chunks]
    extra = NodeWithScore(node=TextNode(text="Not numbered."), score=0.1)
    response = synth.synthesize(QUESTION, nodes, additional_source_nodes=[extra])
    assert response.source_nodes[-1] is extra
    assert check_citations(response) == [1]


# ---------------------------------------------------------------------------- draft strategies


def test_panel_of_drafters_and_separate_fusor(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(
        drafters=[endpoints("model-a"), endpoints("model-b"), endpoints("model-c")],
        fusor=endpoints("fusor"),
    )
    response = engine(synth, bm25(2)).query(QUESTION)

    drafts = fusion_details(response)["drafts"]
    assert [d["model"] for d in drafts] == ["model-a", "model-b", "model-c"]
    fuse_requests = [r for r in rag_fake.requests if is_fuse_request(r)]
    assert [r["model"] for r in fuse_requests] == ["fusor"]
    assert check_citations(response) == [1]


def test_llamaindex_llms_draft_and_fuse(
    rag_fake: FakeOpenAIServer, fake_url: str, bm25: Callable[..., BM25Retriever]
) -> None:
    """Existing LlamaIndex LLM objects are drafters and the fusor (no polyfuse backend)."""
    drafter = OpenAIClientLLM(base_url=fake_url, model="li-drafter")
    fusor = OpenAIClientLLM(base_url=fake_url, model="li-fusor")
    synth = FusionSynthesizer(drafters=[drafter], fusor=fusor, num_drafts=2)
    response = engine(synth, bm25(2)).query(QUESTION)

    assert check_citations(response) == [1]
    assert sorted(r["model"] for r in rag_fake.requests) == ["li-drafter", "li-drafter", "li-fusor"]


def test_openai_like_llms_draft_and_fuse(
    rag_fake: FakeOpenAIServer, fake_url: str, bm25: Callable[..., BM25Retriever]
) -> None:
    """LlamaIndex's OpenAILike, an async-native LLM, as drafter and fusor."""
    from llama_index.llms.openai_like import OpenAILike

    def like(model: str) -> OpenAILike:
        return OpenAILike(
            model=model, api_base=fake_url, api_key="test", is_chat_model=True,
            context_window=4096, max_retries=0,
        )  # fmt: skip

    synth = FusionSynthesizer(drafters=[like("a"), like("b")], fusor=like("f"), streaming=True)
    response = engine(synth, bm25(2)).query(QUESTION)
    text = "".join(response.response_gen)
    assert check_citations(response, text) == [1]
    assert sorted(r["model"] for r in rag_fake.requests) == ["a", "b", "f"]
    assert fusion_details(response)["usage"]["total"]["total_tokens"] > 0


def test_partition_gives_each_draft_its_slice(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2, context="partition")
    response = engine(synth, bm25(4)).query(QUESTION)

    draft_requests = [r for r in rag_fake.requests if not is_fuse_request(r)]
    shown = sorted(
        [int(n) for n, _ in SOURCE.findall(r["messages"][-1]["content"])] for r in draft_requests
    )
    assert shown == [[1, 3], [2, 4]]  # round-robin slices, global numbers
    assert sorted(d["sources"] for d in fusion_details(response)["drafts"]) == shown
    fuse_prompt = next(r for r in rag_fake.requests if is_fuse_request(r))["messages"][-1]
    assert [int(n) for n, _ in SOURCE.findall(fuse_prompt["content"])] == [1, 2, 3, 4]
    assert check_citations(response)


def test_shuffle_shows_each_draft_another_order(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=3, context="shuffle")
    response = engine(synth, bm25(4)).query(QUESTION)

    orders = [
        [int(n) for n, _ in SOURCE.findall(r["messages"][-1]["content"])]
        for r in rag_fake.requests
        if not is_fuse_request(r)
    ]
    assert len(orders) == 3
    assert [1, 2, 3, 4] in orders and [4, 3, 2, 1] in orders
    assert all(sorted(order) == [1, 2, 3, 4] for order in orders)
    assert check_citations(response) == [1]


def test_per_call_draft_params_and_fuse_params(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(
        endpoints(),
        num_drafts=2,
        draft_params={"temperature": 0.9, "max_tokens": 200},
        fuse_params={"temperature": 0.0},
    )
    nodes = bm25(2).retrieve(QUESTION)
    synth.synthesize(QUESTION, nodes, seed=7)

    draft = next(r for r in rag_fake.requests if not is_fuse_request(r))
    fuse = next(r for r in rag_fake.requests if is_fuse_request(r))
    assert (draft["temperature"], draft["max_tokens"], draft["seed"]) == (0.9, 200, 7)
    assert (fuse["temperature"], fuse["max_tokens"]) == (0.0, 200)


# ---------------------------------------------------------------------------- LlamaIndex plumbing


def test_prompts_are_exposed_and_replaceable(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2)
    query_engine = engine(synth, bm25(2))
    prompts = query_engine.get_prompts()
    assert set(prompts) == {
        "response_synthesizer:draft_prompt",
        "response_synthesizer:fuse_prompt",
    }
    custom = PromptTemplate("Sources:\n{context_str}\nQuestion: {query_str}\nAnswer tersely.")
    query_engine.update_prompts({"response_synthesizer:draft_prompt": custom})
    assert synth.get_prompts()["draft_prompt"] == custom
    query_engine.query(QUESTION)
    draft = next(r for r in rag_fake.requests if not is_fuse_request(r))
    assert draft["messages"][-1]["content"].endswith("Answer tersely.")

    with pytest.raises(ValueError, match=r"\{drafts_str\}"):
        synth.update_prompts({"fuse_prompt": PromptTemplate("{query_str} {context_str}")})


def test_instrumentation_events_and_spans(
    rag_fake: FakeOpenAIServer,
    endpoints: Endpoints,
    bm25: Callable[..., BM25Retriever],
    events: EventRecorder,
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=3)
    engine(synth, bm25(2)).query(QUESTION)

    names = events.names()
    start, end = names.index("SynthesizeStartEvent"), names.index("SynthesizeEndEvent")
    inside = names[start:end]
    assert inside.count("FusionCandidateEndEvent") == 3
    assert inside.index("FusionAggregationStartEvent") < inside.index("FusionEndEvent")
    assert names[0] == "QueryStartEvent" and names[-1] == "QueryEndEvent"
    fused = events.of("FusionEndEvent")[0]
    assert fused.span_id and fused.span_id.startswith("FusionSynthesizer.synthesize")
    assert fused.usage["total"]["calls"] == 2


def test_as_query_engine_on_a_vector_index(
    embeddings_route: Any, endpoints: Endpoints, fake_url: str, documents: list[Any]
) -> None:
    from llama_index.core import VectorStoreIndex

    from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding

    embed = OpenAICompatibleEmbedding(fake_url, model_name="hashed")
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    synth = FusionSynthesizer(endpoints(), num_drafts=2)
    query_engine = index.as_query_engine(
        llm=synth.llm, response_synthesizer=synth, similarity_top_k=2
    )
    response = query_engine.query(QUESTION)
    assert response.source_nodes[0].node.metadata["file_name"] == "eiffel.txt"
    assert check_citations(response) == [1]


class Answer(BaseModel):
    answer: str
    year: int


def test_output_cls_gives_a_pydantic_response(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2, output_cls=Answer)
    response = engine(synth, bm25(2)).query(QUESTION)

    assert isinstance(response, PydanticResponse)
    assert isinstance(response.response, Answer)
    assert "Eiffel Tower was completed in 1889" in response.response.answer
    fuse = next(r for r in rag_fake.requests if is_fuse_request(r))
    assert fuse["response_format"]["json_schema"]["name"] == "Answer"
    assert all("response_format" not in r for r in rag_fake.requests if not is_fuse_request(r))

    with pytest.raises(ValueError, match="streaming=False"):
        FusionSynthesizer(endpoints(), output_cls=Answer, streaming=True)


# ---------------------------------------------------------------------------- bad input, failures


def test_no_nodes_gives_the_empty_response(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    synth = FusionSynthesizer(endpoints(), empty_response="Nothing found.")
    assert str(synth.synthesize(QUESTION, [])) == "Nothing found."
    streaming = FusionSynthesizer(endpoints(), streaming=True)
    assert "".join(streaming.synthesize(QUESTION, []).response_gen) == "Empty Response"
    assert synth.get_response(QUESTION, []) == "Nothing found."
    assert rag_fake.requests == []


async def test_no_nodes_async(rag_fake: FakeOpenAIServer, endpoints: Endpoints) -> None:
    response = await FusionSynthesizer(endpoints()).asynthesize(QUESTION, [])
    assert str(response) == "Empty Response"
    assert await FusionSynthesizer(endpoints()).aget_response(QUESTION, []) == "Empty Response"
    streaming = FusionSynthesizer(endpoints(), streaming=True)
    tokens = await streaming.aget_response(QUESTION, [])
    assert [t async for t in tokens] == ["Empty Response"]  # pyright: ignore[reportGeneralTypeIssues]
    assert rag_fake.requests == []


def test_a_single_draft_is_the_answer_without_a_fusor_call(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    response = engine(FusionSynthesizer(endpoints(), num_drafts=1), bm25(2)).query(QUESTION)
    details = fusion_details(response)
    assert details["selected"] == 0 and details["fusor"]["sources"] == []
    assert len(rag_fake.requests) == 1
    assert check_citations(response) == [1]


def test_all_drafts_failing_raises_a_clear_error(
    make_fake: Callable[..., FakeOpenAIServer],
    endpoints: Endpoints,
    bm25: Callable[..., BM25Retriever],
) -> None:
    fake = make_fake(responder=rag_responder)
    fake.inject(Fault("status", status=400, times=10))
    synth = FusionSynthesizer(endpoints(), num_drafts=3)
    with pytest.raises(NoCandidatesError, match="all 3 candidates failed") as info:
        engine(synth, bm25(2)).query(QUESTION)
    assert len(info.value.failures) == 3
    assert "HTTP 400" in str(info.value)


def test_failed_drafts_are_recorded_and_the_rest_fused(
    make_fake: Callable[..., FakeOpenAIServer],
    endpoints: Endpoints,
    bm25: Callable[..., BM25Retriever],
) -> None:
    fake = make_fake(responder=rag_responder)
    fake.inject(Fault("status", status=400, match_model="broken"))
    synth = FusionSynthesizer(
        drafters=[endpoints("broken"), endpoints("good-a"), endpoints("good-b")]
    )
    response = engine(synth, bm25(2)).query(QUESTION)

    drafts = fusion_details(response)["drafts"]
    assert [d["status"] for d in drafts] == ["failed", "ok", "ok"]
    assert "HTTP 400" in drafts[0]["error"]
    assert check_citations(response) == [1]


def test_fusor_failure_falls_back_to_the_best_draft(
    make_fake: Callable[..., FakeOpenAIServer],
    endpoints: Endpoints,
    bm25: Callable[..., BM25Retriever],
) -> None:
    fake = make_fake(responder=rag_responder)
    fake.inject(Fault("status", status=400, match_model="fusor"))
    synth = FusionSynthesizer(drafters=[endpoints()], fusor=endpoints("fusor"), num_drafts=2)
    response = engine(synth, bm25(2)).query(QUESTION)

    details = fusion_details(response)
    assert details["selected"] == 0
    assert "HTTP 400" in details["fallback_reason"]
    assert response.response == details["drafts"][0]["text"]

    strict = FusionSynthesizer(
        drafters=[endpoints()],
        fusor=endpoints("fusor"),
        num_drafts=2,
        policy=QuorumPolicy(fallback_on_aggregator_error=False),
    )
    fake.inject(Fault("status", status=400, match_model="fusor"))
    with pytest.raises(AggregationError, match="fusor"):
        engine(strict, bm25(2)).query(QUESTION)


def test_fusor_failing_mid_stream_raises(
    make_fake: Callable[..., FakeOpenAIServer],
    endpoints: Endpoints,
    bm25: Callable[..., BM25Retriever],
) -> None:
    fake = make_fake(responder=rag_responder)
    fake.inject(Fault("error_mid_stream", match_model="fusor"))
    synth = FusionSynthesizer(
        drafters=[endpoints()],
        fusor=endpoints("fusor", max_retries=0),
        num_drafts=2,
        streaming=True,
    )
    response = engine(synth, bm25(2)).query(QUESTION)
    with pytest.raises(AggregationError, match="void"):
        list(response.response_gen)


def test_query_longer_than_the_window_is_a_clear_error(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), context_window=512, num_output=64)
    long_query = "Where is the Eiffel Tower? " + "Please be precise. " * 200
    with pytest.raises(ContextWindowError, match="context_window"):
        engine(synth, bm25(2)).query(long_query)
    assert rag_fake.requests == []  # nothing was sent


def test_sources_beyond_the_window_are_cut_then_left_out(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    long_text = "The Eiffel Tower was completed in 1889. " + "It is in Paris. " * 300
    chunks = [long_text, "Bananas are berries.", "The Nile is long."]
    nodes = [NodeWithScore(node=TextNode(text=c), score=1.0) for c in chunks]
    synth = FusionSynthesizer(endpoints(), num_drafts=2, context_window=700, num_output=100)
    response = synth.synthesize(QUESTION, nodes)

    details = fusion_details(response)
    assert details["truncated_sources"] == [1]
    assert details["omitted_sources"] == [2, 3]
    prompt = next(r for r in rag_fake.requests if not is_fuse_request(r))["messages"][-1]
    assert [n for n, _ in SOURCE.findall(prompt["content"])] == ["1"]
    assert check_citations(response) == [1]


def test_the_fusor_sees_cited_sources_first_when_its_window_is_small(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, fake_url: str
) -> None:
    filler = " It has many more details that nobody asked about." * 60
    chunks = [f"Bananas are berries.{filler}", f"The Eiffel Tower was completed in 1889.{filler}"]
    chunks += [f"The Nile is long.{filler}", f"Everest is high.{filler}"]
    nodes = [NodeWithScore(node=TextNode(text=c), score=1.0) for c in chunks]
    small = OpenAIClientLLM(base_url=fake_url, model="small-fusor")  # a 2048-token window
    synth = FusionSynthesizer(drafters=[endpoints()], fusor=small, num_drafts=2)
    response = synth.synthesize(QUESTION, nodes)

    details = fusion_details(response)
    assert details["omitted_sources"] == []  # the drafters' 3900-token windows hold them all
    assert all(d["cited"] == [2] for d in details["drafts"])
    assert 2 in details["fusor"]["sources"]  # the cited source comes first
    assert details["fusor"]["omitted_sources"]  # the others did not all fit
    assert check_citations(response) == [2]


def test_partition_uses_more_context_than_one_window(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    chunks = [f"Fact {i}: the Eiffel Tower has detail number {i}. " * 12 for i in range(1, 7)]
    nodes = [NodeWithScore(node=TextNode(text=c), score=1.0) for c in chunks]
    kwargs: dict[str, Any] = {"context_window": 1000, "num_output": 100}
    full = FusionSynthesizer(endpoints(), num_drafts=3, **kwargs).synthesize(QUESTION, nodes)
    parts = FusionSynthesizer(endpoints(), num_drafts=3, context="partition", **kwargs).synthesize(
        QUESTION, nodes
    )

    assert fusion_details(full)["omitted_sources"]  # one window cannot hold all six
    assert fusion_details(parts)["omitted_sources"] == []


def test_bad_configuration_is_rejected_early(endpoints: Endpoints) -> None:
    with pytest.raises(ValueError, match="context must be one of"):
        FusionSynthesizer(endpoints(), context="sliced")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_drafts"):
        FusionSynthesizer(endpoints(), num_drafts=0)
    with pytest.raises(ValueError, match="extra_body"):
        FusionSynthesizer(endpoints(), draft_params={"temprature": 0.5})
    with pytest.raises(ValueError, match="LlamaIndex LLM or a polyfuse Backend"):
        FusionSynthesizer("gpt-4o")  # type: ignore[arg-type]


def test_concurrent_async_queries_stay_separate(
    rag_fake: FakeOpenAIServer, endpoints: Endpoints, bm25: Callable[..., BM25Retriever]
) -> None:
    synth = FusionSynthesizer(endpoints(), num_drafts=2)
    query_engine = engine(synth, bm25(2))

    async def both() -> tuple[Any, ...]:
        return await asyncio.gather(
            query_engine.aquery(QUESTION), query_engine.aquery("How tall is Mount Everest?")
        )

    eiffel, everest = asyncio.run(both())
    assert "1889" in eiffel.response and "8849" in everest.response
    assert fusion_details(eiffel) is not fusion_details(everest)
    check_citations(eiffel)
    check_citations(everest)
