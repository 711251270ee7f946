"""FusionLLM as a LlamaIndex LLM, and LlamaIndex LLMs as polyfuse backends, against the fake
server (the official openai client drives the third-party LLM)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from li_helpers import DRAFT, EventRecorder, OpenAIClientLLM, is_fuse_request
from llama_index.core import PromptTemplate, Settings
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.tools import FunctionTool
from llama_index.retrievers.bm25 import BM25Retriever
from pydantic import BaseModel

from llama_index.llms.polyfuse import FusionLLM, LlamaIndexBackend
from polyfuse import (
    AggregationError,
    ChatRequest,
    Fuse,
    Fusion,
    FusionResult,
    InvalidRequestError,
    NoCandidatesError,
    OpenAIEndpoint,
    Pool,
    QuorumPolicy,
)
from polyfuse.testing import FakeOpenAIServer, Fault, default_responder

Endpoints = Callable[..., OpenAIEndpoint]
HELLO = [ChatMessage(role=MessageRole.USER, content="Why is the sky blue?")]


def fuse_first_draft(body: dict[str, Any], index: int) -> Any:
    """Candidates answer like the default fake; the fusor returns the first draft it sees, or
    the proposed tool call when the drafts propose one."""
    if not is_fuse_request(body):
        return default_responder(body, index)
    prompt = body["messages"][-1]["content"]
    if "Proposed tool calls" in prompt:
        return default_responder(body, index)
    return "Fused: " + re.sub(r"^Answer \d+: ", "", DRAFT.findall(prompt)[0])


@pytest.fixture
def fuse_fake(make_fake: Callable[..., FakeOpenAIServer], fake_url: str) -> FakeOpenAIServer:
    return make_fake(responder=fuse_first_draft)


@pytest.fixture
def llm(fuse_fake: FakeOpenAIServer, endpoints: Endpoints) -> FusionLLM:
    return FusionLLM(Fusion(Pool.repeat(endpoints(), 3)), params={"temperature": 0.7})


def result_of(response: Any) -> FusionResult:
    return response.raw["fusion"]


# ---------------------------------------------------------------------------- chat & completion


def test_chat_fuses_and_reports_usage(llm: FusionLLM, fuse_fake: FakeOpenAIServer) -> None:
    response = llm.chat(HELLO)

    result = result_of(response)
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content == "Fused: Why is the sky blue?"
    assert len(result.candidates) == 3 and result.aggregation.method == "fuse"
    total = result.usage.total
    assert response.additional_kwargs == {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
    }
    assert response.raw["usage"]["total_tokens"] == total.total_tokens > 0
    assert [r["temperature"] for r in fuse_fake.requests] == [0.7, 0.7]


async def test_achat_and_kwargs_override_params(
    llm: FusionLLM, fuse_fake: FakeOpenAIServer
) -> None:
    response = await llm.achat(HELLO, temperature=0.1, max_tokens=50)
    assert response.message.content == "Fused: Why is the sky blue?"
    assert {(r["temperature"], r["max_tokens"]) for r in fuse_fake.requests} == {(0.1, 50)}


def test_stream_chat_yields_deltas_then_a_final_chunk(llm: FusionLLM) -> None:
    chunks = list(llm.stream_chat(HELLO))

    deltas = [c.delta for c in chunks]
    assert len(deltas) > 3 and deltas[-1] == ""
    assert "".join(deltas) == chunks[-1].message.content
    assert chunks[-2].message.content == chunks[-1].message.content  # cumulative text
    assert chunks[-1].raw["usage"]["total_tokens"] > 0
    assert chunks[0].raw is None


async def test_astream_chat(llm: FusionLLM) -> None:
    chunks = [c async for c in await llm.astream_chat(HELLO)]
    assert "".join(c.delta or "" for c in chunks) == "Fused: Why is the sky blue?"


def test_completion_methods_are_derived_from_chat(llm: FusionLLM) -> None:
    assert llm.complete("Why is the sky blue?").text == "Fused: Why is the sky blue?"
    streamed = list(llm.stream_complete("Why is the sky blue?"))
    assert streamed[-1].text == "Fused: Why is the sky blue?"
    assert "".join(r.delta or "" for r in streamed) == streamed[-1].text


async def test_async_completion_methods(llm: FusionLLM) -> None:
    assert (await llm.acomplete("Hi")).text == "Fused: Hi"
    streamed = [r async for r in await llm.astream_complete("Hi")]
    assert streamed[-1].text == "Fused: Hi"


def test_metadata_and_construction(endpoints: Endpoints) -> None:
    llm = FusionLLM(Fusion(Pool.panel([endpoints("a"), endpoints("b")])), context_window=8000)
    meta = llm.metadata
    assert meta.is_chat_model and meta.is_function_calling_model
    assert (meta.context_window, meta.model_name) == (8000, "polyfuse:fuse(a,b)")
    with pytest.raises(InvalidRequestError, match="polyfuse Fusion"):
        FusionLLM(Pool.repeat(endpoints(), 2))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="extra_body"):
        FusionLLM(Fusion(Pool.repeat(endpoints(), 2)), params={"temprature": 1.0})
    with pytest.raises(InvalidRequestError, match="extra_body"):
        llm.chat(HELLO, not_a_param=1)


@pytest.fixture
def settings_llm(llm: FusionLLM) -> Iterator[FusionLLM]:
    Settings.llm = llm
    yield llm
    Settings._llm = None


def test_settings_llm_drives_llamaindex_builtins(
    settings_llm: FusionLLM, bm25: Callable[..., BM25Retriever]
) -> None:
    assert Settings.llm is settings_llm
    text = Settings.llm.predict(PromptTemplate("Say something about {topic}."), topic="tides")
    assert text == "Fused: Say something about tides."
    # LlamaIndex's own compact synthesizer, answering through the fusion
    engine = RetrieverQueryEngine.from_args(bm25(2))
    assert str(engine.query("When was the Eiffel Tower completed?")).startswith("Fused: ")


def test_token_counting_handler_sees_every_call(llm: FusionLLM) -> None:
    counter = TokenCountingHandler()
    llm.callback_manager = CallbackManager([counter])
    total = result_of(llm.chat(HELLO)).usage.total
    assert counter.prompt_llm_token_count == total.prompt_tokens
    assert counter.completion_llm_token_count == total.completion_tokens


def test_instrumentation_inside_the_chat_span(llm: FusionLLM, events: EventRecorder) -> None:
    llm.chat(HELLO)
    names = events.names()
    assert names[0] == "LLMChatStartEvent" and names[-1] == "LLMChatEndEvent"
    assert names.count("FusionCandidateEndEvent") == 3
    end = events.of("FusionEndEvent")[0]
    assert end.method == "fuse" and end.usage["total"]["calls"] == 2
    assert end.span_id == events.of("LLMChatStartEvent")[0].span_id


def test_fusor_failing_mid_stream_is_an_error_not_a_spliced_answer(
    fuse_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    llm = FusionLLM(Fusion(Pool.repeat(endpoints(), 2), Fuse(endpoints("fusor", max_retries=0))))
    fuse_fake.inject(Fault("error_mid_stream", match_model="fusor"))
    with pytest.raises(AggregationError, match="void"):
        list(llm.stream_chat(HELLO))
    # not streaming, the same failure falls back to the best candidate
    fuse_fake.inject(Fault("error_mid_stream", match_model="fusor"))
    response = llm.chat(HELLO)
    assert result_of(response).aggregation.fallback_reason


# ---------------------------------------------------------------------------- tools


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_predict_and_call_runs_the_fused_tool_call(llm: FusionLLM) -> None:
    tool = FunctionTool.from_defaults(fn=multiply)
    output = llm.predict_and_call([tool], user_msg="What is 3 times 3?")
    assert output.response == "9"
    assert output.sources[0].raw_input == {"args": (), "kwargs": {"a": 3, "b": 3}}


def test_chat_with_tools_and_tool_selection(llm: FusionLLM, fuse_fake: FakeOpenAIServer) -> None:
    tool = FunctionTool.from_defaults(fn=multiply)
    response = llm.chat_with_tools([tool], user_msg="3 times 3?", tool_required=True)
    [selection] = llm.get_tool_calls_from_response(response)
    assert (selection.tool_name, selection.tool_kwargs) == ("multiply", {"a": 3, "b": 3})
    assert {r["tool_choice"] for r in fuse_fake.requests} == {"required"}
    with pytest.raises(InvalidRequestError, match="no tool call"):
        llm.get_tool_calls_from_response(llm.chat(HELLO))


class Person(BaseModel):
    name: str
    age: int


def test_structured_predict(llm: FusionLLM) -> None:
    person = llm.structured_predict(Person, PromptTemplate("Describe {who}."), who="Ada")
    assert person == Person(name="a", age=3)


# llama-index-workflows inspects the agent with inspect.getmembers (pydantic's warning, not ours)
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")
async def test_function_agent_loop(llm: FusionLLM) -> None:
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=multiply)], llm=llm)
    output = await agent.run(user_msg="What is 3 times 3?")  # pyright: ignore[reportDeprecated]
    assert output.tool_calls[0].tool_name == "multiply"
    assert output.tool_calls[0].tool_output.content == "9"
    assert str(output.response.content) == "Fused: The tool said: 9"


def test_messages_convert_to_the_wire(llm: FusionLLM, fuse_fake: FakeOpenAIServer) -> None:
    history = [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[TextBlock(text="What is this?"), ImageBlock(url="https://x.test/cat.png")],
        ),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[ToolCallBlock(tool_call_id="c1", tool_name="look", tool_kwargs={"q": 1})],
        ),
        ChatMessage(
            role=MessageRole.TOOL, content="a cat", additional_kwargs={"tool_call_id": "c1"}
        ),
    ]
    llm.chat(history)
    sent = fuse_fake.requests[0]["messages"]
    assert sent[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/cat.png"},
    }
    assert sent[2].get("content") is None
    assert sent[2]["tool_calls"][0]["function"] == {"name": "look", "arguments": '{"q": 1}'}
    assert sent[3] == {"role": "tool", "content": "a cat", "tool_call_id": "c1"}

    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        llm.chat([ChatMessage(role=MessageRole.TOOL, content="orphan")])


# ---------------------------------------------------------------------------- LlamaIndexBackend


def test_llamaindex_llms_as_pool_members_and_fusor(
    fuse_fake: FakeOpenAIServer, fake_url: str, endpoints: Endpoints
) -> None:
    third_party = OpenAIClientLLM(base_url=fake_url, model="li-model")
    llm = FusionLLM.from_models([third_party, endpoints("http-model")], fusor=third_party)

    assert llm.metadata.context_window == 2048  # the LlamaIndex model's window
    response = llm.chat(HELLO)
    result = result_of(response)
    assert [c.model for c in result.candidates] == ["li-model", "http-model"]
    assert result.aggregation.calls[0].backend == "li-model"
    assert response.message.content.startswith("Fused: ")
    assert sorted(r["model"] for r in fuse_fake.requests) == ["http-model", "li-model", "li-model"]


def test_a_failing_llamaindex_llm_is_a_recorded_candidate_failure(
    fuse_fake: FakeOpenAIServer, fake_url: str, endpoints: Endpoints
) -> None:
    broken = OpenAIClientLLM(base_url=fake_url, model="broken")
    fuse_fake.inject(Fault("status", status=500, match_model="broken", times=5))
    llm = FusionLLM(
        Fusion(Pool.panel([LlamaIndexBackend(broken), endpoints("ok-a"), endpoints("ok-b")]))
    )
    result = result_of(llm.chat(HELLO))
    failed = result.candidates[0]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.type == "BackendError"
    assert "InternalServerError" in failed.error.message
    assert [c.status for c in result.candidates[1:]] == ["ok", "ok"]

    alone = FusionLLM(Fusion(Pool.repeat(LlamaIndexBackend(broken), 2)))
    with pytest.raises(NoCandidatesError, match="InternalServerError"):
        alone.chat(HELLO)


def test_llamaindex_backend_streams_and_converts_tool_calls(
    fuse_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    """A FusionLLM is itself a LlamaIndex LLM: wrapped, it is a pool member whose tool calls
    (ToolCallBlocks) come back as polyfuse tool calls, streamed or not."""
    inner = FusionLLM(Fusion(Pool.repeat(endpoints("inner"), 2)))
    backend = LlamaIndexBackend(inner, name="nested")
    tool = FunctionTool.from_defaults(fn=multiply).metadata.to_openai_tool()
    for policy in (QuorumPolicy(), QuorumPolicy(stream_candidates=True)):
        outer = Fusion(Pool.repeat(backend, 2), Fuse(endpoints("outer-fusor")), policy)
        result = outer.run("What is 3 times 3?", tools=[tool])
        for candidate in result.candidates:
            assert candidate.backend == "nested" and candidate.finish_reason == "tool_calls"
            [call] = candidate.tool_calls or []
            assert (call.function.name, json.loads(call.function.arguments)) == (
                "multiply",
                {"a": 3, "b": 3},
            )
            assert candidate.usage.total_tokens > 0
        assert result.tool_calls[0].function.name == "multiply"


async def test_llamaindex_backend_text_stream(
    fuse_fake: FakeOpenAIServer, endpoints: Endpoints
) -> None:
    backend = LlamaIndexBackend(FusionLLM(Fusion(Pool.repeat(endpoints(), 2))))
    deltas = [d async for d in backend.stream(ChatRequest.build("Hi there"))]
    assert "".join(d.content or "" for d in deltas) == "Fused: Hi there"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage is not None
    with pytest.raises(InvalidRequestError, match="LlamaIndex LLM"):
        LlamaIndexBackend(endpoints())  # type: ignore[arg-type]


def test_sync_only_llamaindex_llms_still_run_candidates_concurrently(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    """OpenAIClientLLM implements only sync methods (CustomLLM's async ones would block the
    loop): the backend calls it in threads, so the server sees the candidates overlap."""
    state = {"now": 0, "peak": 0}

    async def slow(body: dict[str, Any], index: int) -> Any:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.2)
        state["now"] -= 1
        return default_responder(body, index)

    make_fake(responder=slow)
    backend = LlamaIndexBackend(OpenAIClientLLM(base_url=fake_url, model="sync-only"))
    assert backend.threaded
    for policy in (QuorumPolicy(), QuorumPolicy(stream_candidates=True)):
        state["peak"] = 0
        result = Fusion(Pool.repeat(backend, 3), policy=policy).run("Hi")
        assert [c.status for c in result.candidates] == ["ok", "ok", "ok"]
        assert state["peak"] == 3
    assert not LlamaIndexBackend(FusionLLM(Fusion(Pool.repeat(backend, 1)))).threaded


def openai_like(base_url: str, model: str) -> Any:
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=model,
        api_base=base_url,
        api_key="test",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=4096,
        max_retries=0,
    )


def test_openai_like_llm_as_a_native_async_pool_member_with_tools(
    fuse_fake: FakeOpenAIServer, fake_url: str, endpoints: Endpoints
) -> None:
    """LlamaIndex's own OpenAILike LLM: async-native, tool calls as ToolCallBlocks, usage
    and finish reasons read from its responses."""
    backend = LlamaIndexBackend(openai_like(fake_url, "li-openai-like"))
    assert not backend.threaded
    tool = FunctionTool.from_defaults(fn=multiply).metadata.to_openai_tool()
    for policy in (QuorumPolicy(), QuorumPolicy(stream_candidates=True)):
        fusion = Fusion(Pool.repeat(backend, 2), Fuse(endpoints("fusor")), policy)
        result = fusion.run("What is 3 times 3?", tools=[tool], temperature=0.3)
        for candidate in result.candidates:
            assert candidate.status == "ok" and candidate.finish_reason == "tool_calls"
            [call] = candidate.tool_calls or []
            assert json.loads(call.function.arguments) == {"a": 3, "b": 3}
        assert result.tool_calls[0].function.name == "multiply"
    sent = [r for r in fuse_fake.requests if r["model"] == "li-openai-like"]
    assert {r["temperature"] for r in sent} == {0.3}
    assert all(r["tools"][0]["function"]["name"] == "multiply" for r in sent)
    text = Fusion(Pool.repeat(backend, 2)).run("Hello there")
    assert all(c.usage.total_tokens > 0 and c.finish_reason == "stop" for c in text.candidates)
