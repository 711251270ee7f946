"""LangChain chat models as pool members and fusors: ChatOpenAI clients talking to the fake
server through ``LangChainBackend``, with their runs nested under the ChatFusion run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from langchain_polyfuse import ChatFusion, LangChainBackend
from polyfuse import (
    APIConnectionError,
    AuthenticationError,
    ChatRequest,
    Fusion,
    HedgedBackend,
    HedgeSettings,
    InvalidRequestError,
    Pool,
    ServerError,
)
from polyfuse.aggregators import Fuse
from polyfuse.testing import FakeOpenAIServer, Fault

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a location.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


class City(BaseModel):
    """A city."""

    name: str
    population: int


class Runs(BaseCallbackHandler):
    """Records every chat model run: name, id, parent, tags and first message text."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.runs.append(
            {
                "name": (serialized or {}).get("name"),
                "id": run_id,
                "parent": parent_run_id,
                "tags": tags or [],
                "text": str(messages[0][-1].content),
            }
        )


@pytest.fixture
def chat_openai(lc_url: str) -> Callable[..., ChatOpenAI]:
    """ChatOpenAI clients on the fake server, each with its own HTTP clients (so no client is
    shared between the event loops of different tests)."""

    def build(model: str = "lc-model", **settings: Any) -> ChatOpenAI:
        settings.setdefault("base_url", lc_url)
        return ChatOpenAI(
            model=model,
            api_key="sk-test",  # type: ignore[arg-type]
            http_client=httpx.Client(),
            http_async_client=httpx.AsyncClient(),
            stream_usage=True,
            **settings,
        )

    return build


# ---------------------------------------------------------------------- ChatFusion with members


def test_members_are_child_runs_of_the_fusion(chat_openai: Callable[..., ChatOpenAI]) -> None:
    model = ChatFusion(candidates=[chat_openai("a"), chat_openai("b")], fusor=chat_openai("f"))
    runs = Runs()
    message = model.invoke("hello members", config={"callbacks": [runs]})
    root = runs.runs[0]
    assert root["name"] == "ChatFusion" and root["parent"] is None
    children = runs.runs[1:]
    assert len(children) == 3  # two candidates and the fusor
    assert {c["parent"] for c in children} == {root["id"]}
    assert all({"polyfuse", "nostream"} <= set(c["tags"]) for c in children)
    fusion = message.response_metadata["fusion"]
    assert [c["model"] for c in fusion["candidates"]] == ["a", "b"]
    assert fusion["calls"][0]["model"] == "f"
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] > 0
    assert fusion["usage"]["total"]["calls"] == 3


def test_hedged_members_are_child_runs_and_hedged_once(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    model = ChatFusion(
        candidates=[chat_openai("a"), chat_openai("b")],
        fusor=chat_openai("f"),
        hedge=HedgeSettings(after=30.0),
    )
    runs = Runs()
    message = model.invoke("hello hedged members", config={"callbacks": [runs]})
    children = runs.runs[1:]
    assert len(children) == 3  # the callbacks reach the LangChain members behind the hedging
    assert {c["parent"] for c in children} == {runs.runs[0]["id"]}
    assert message.response_metadata["fusion"]["usage"]["total"]["calls"] == 3
    # the call's fusion hedges each member once, with the hedging state of the ready fusion
    ready = model._plan.fusion  # pyright: ignore[reportPrivateUsage]
    per_call = model._plan.fusion_for([runs])  # pyright: ignore[reportPrivateUsage]
    for before, member in zip(ready.pool.members, per_call.pool.members, strict=True):
        assert isinstance(member.backend, HedgedBackend)
        assert isinstance(before.backend, HedgedBackend)
        assert isinstance(member.backend.backend, LangChainBackend)
        assert member.backend.budget is before.backend.budget
        assert member.backend.observed is before.backend.observed
    # the fusor (not a member) too: one budget caps the extra calls of every call
    assert isinstance(ready.aggregator, Fuse) and isinstance(per_call.aggregator, Fuse)
    ready_fusor, call_fusor = ready.aggregator.fusor, per_call.aggregator.fusor
    first = ready.pool.members[0].backend
    assert isinstance(ready_fusor, HedgedBackend) and isinstance(call_fusor, HedgedBackend)
    assert isinstance(first, HedgedBackend) and isinstance(call_fusor.backend, LangChainBackend)
    assert call_fusor.budget is ready_fusor.budget is first.budget
    assert call_fusor.observed is ready_fusor.observed


def test_hedged_members_without_tool_support_fail_clearly() -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage("x")] * 4))
    model = ChatFusion(candidates=[fake], n=2, hedge=HedgeSettings(after=30.0))
    with pytest.raises(InvalidRequestError, match="does not implement bind_tools"):
        model.bind_tools([WEATHER_TOOL], tool_choice="any")


async def test_concurrent_calls_keep_their_own_child_runs(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    model = ChatFusion(candidates=[chat_openai("a")], n=2)
    runs = Runs()
    questions = ["alpha question", "beta question", "gamma question"]
    inputs: list[LanguageModelInput] = [*questions]
    await model.abatch(inputs, config={"callbacks": [runs]})
    roots = {r["id"]: r["text"] for r in runs.runs if r["name"] == "ChatFusion"}
    assert sorted(roots.values()) == sorted(questions)
    children = [r for r in runs.runs if r["name"] != "ChatFusion"]
    assert len(children) == 3 * 3  # per question: 2 candidates + 1 fusor
    for child in children:
        parent_question = roots[child["parent"]]
        # a candidate sees its own question; the fusor sees it inside its prompt
        assert parent_question in child["text"]


def test_tools_reach_langchain_members(chat_openai: Callable[..., ChatOpenAI]) -> None:
    model = ChatFusion(candidates=[chat_openai("a"), chat_openai("b")])
    bound = model.bind_tools([WEATHER_TOOL], tool_choice="any")
    message = bound.invoke("Weather in 'Lima'?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"location": "Lima"})
    ]
    assert all(c["tool_calls"] for c in message.response_metadata["fusion"]["candidates"])


def test_structured_output_through_langchain_members(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    model = ChatFusion(candidates=[chat_openai("a"), chat_openai("b")])
    city = model.with_structured_output(City, method="json_schema").invoke("A city, please")
    assert city == City(name="a", population=3)


def test_streaming_candidates_and_fused_answer(chat_openai: Callable[..., ChatOpenAI]) -> None:
    model = ChatFusion(candidates=[chat_openai("a"), chat_openai("b")], stream_candidates=True)
    chunks = list(model.stream("stream through members"))
    assert chunks[-1].chunk_position == "last"  # pyright: ignore[reportAttributeAccessIssue]
    fusion = chunks[-1].response_metadata["fusion"]
    assert all(c["status"] == "ok" for c in fusion["candidates"])
    assert all(c["usage"]["calls_without_usage"] == 0 for c in fusion["candidates"])


def test_members_without_tool_support_fail_clearly() -> None:
    fake = GenericFakeChatModel(messages=iter([AIMessage("x")] * 4))
    model = ChatFusion(candidates=[fake], n=2)
    with pytest.raises(InvalidRequestError, match="does not implement bind_tools"):
        model.bind_tools([WEATHER_TOOL], tool_choice="any")


# ---------------------------------------------------------------------- LangChainBackend alone


def _request(text: str = "hello backend", **params: Any) -> ChatRequest:
    return ChatRequest.build(text, **params)


async def test_backend_complete_maps_answer_and_usage(
    chat_openai: Callable[..., ChatOpenAI], lc_fake: FakeOpenAIServer
) -> None:
    backend = LangChainBackend(chat_openai("m1"))
    assert (backend.name, backend.model, backend.supports_n) == ("m1", "m1", False)
    [completion] = await backend.complete(_request(temperature=0.3, max_tokens=7, stop="X"))
    assert completion.content == "Answer 0: hello backend"
    assert completion.finish_reason == "stop"
    assert completion.model == "m1"
    assert completion.usage.calls == 1 and completion.usage.total_tokens > 0
    body = lc_fake.requests[-1]
    assert (body["temperature"], body["stop"]) == (0.3, ["X"])
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 7


async def test_backend_missing_usage_is_recorded_as_missing(
    make_fake: Callable[..., FakeOpenAIServer], chat_openai: Callable[..., ChatOpenAI]
) -> None:
    make_fake(usage=False)
    [completion] = await LangChainBackend(chat_openai()).complete(_request())
    assert (completion.usage.calls, completion.usage.calls_without_usage) == (1, 1)


async def test_backend_stream_tool_calls_and_usage(chat_openai: Callable[..., ChatOpenAI]) -> None:
    backend = LangChainBackend(chat_openai())
    deltas = [
        d async for d in backend.stream(_request(tools=[WEATHER_TOOL], tool_choice="required"))
    ]
    pieces = [p for d in deltas for p in (d.tool_calls or [])]
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(arguments) == {"location": "a"}
    assert pieces[0]["function"]["name"] == "get_weather"
    assert deltas[-1].finish_reason == "tool_calls"
    assert deltas[-1].usage is not None and deltas[-1].usage.calls_without_usage == 0


async def test_backend_json_schema_answer_is_json_text(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    [completion] = await LangChainBackend(chat_openai()).complete(
        _request(response_format=response_format)
    )
    assert json.loads(completion.content or "") == {"n": 3}


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (500, ServerError)])
async def test_backend_maps_sdk_errors(
    lc_fake: FakeOpenAIServer,
    chat_openai: Callable[..., ChatOpenAI],
    status: int,
    error: type[Exception],
) -> None:
    lc_fake.inject(Fault("status", status=status))
    backend = LangChainBackend(chat_openai(max_retries=0))
    with pytest.raises(error) as caught:
        await backend.complete(_request())
    assert caught.value.__cause__ is not None  # the SDK's exception is kept as the cause


async def test_backend_maps_connection_errors(chat_openai: Callable[..., ChatOpenAI]) -> None:
    backend = LangChainBackend(chat_openai(base_url="http://127.0.0.1:9/v1", max_retries=0))
    with pytest.raises(APIConnectionError):
        await backend.complete(_request())


async def test_backend_in_a_core_fusion(chat_openai: Callable[..., ChatOpenAI]) -> None:
    panel = [LangChainBackend(chat_openai(m)) for m in ("p1", "p2", "p3")]
    result = await Fusion(Pool.panel(panel)).arun("core fusion with LangChain members")
    assert [c.model for c in result.candidates] == ["p1", "p2", "p3"]
    assert result.usage.total.calls == 4
    assert result.content


def test_backend_rejects_non_chat_models() -> None:
    with pytest.raises(InvalidRequestError, match="BaseChatModel"):
        LangChainBackend("gpt-4o")  # type: ignore[arg-type]


async def test_backend_close_is_harmless(chat_openai: Callable[..., ChatOpenAI]) -> None:
    backend = LangChainBackend(chat_openai())
    await backend.aclose()
    await asyncio.sleep(0)
    [completion] = await backend.complete(_request())
    assert completion.content


async def test_backend_json_object_answer(
    lc_fake: FakeOpenAIServer, chat_openai: Callable[..., ChatOpenAI]
) -> None:
    [completion] = await LangChainBackend(chat_openai()).complete(
        _request(
            "Give a JSON with 'colour' and 'size' keys", response_format={"type": "json_object"}
        )
    )
    assert json.loads(completion.content or "") == {"colour": "a", "size": "a"}
    assert lc_fake.requests[-1]["response_format"] == {"type": "json_object"}


class ChainRuns(Runs):
    """Also records chain runs."""

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.runs.append({"name": kwargs.get("name"), "id": run_id, "parent": parent_run_id})


def test_streamed_chain_attaches_member_runs_to_the_chain(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    # LangChain does not hand _stream its run manager, so in streaming the members' runs are
    # attached to the enclosing runnable (here the sequence), still inside the same trace.
    from langchain_core.prompts import ChatPromptTemplate

    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ChatFusion(
        candidates=[chat_openai("a"), chat_openai("b")]
    )
    runs = ChainRuns()
    chunks = list(chain.stream({"q": "streamed chain"}, config={"callbacks": [runs]}))
    assert chunks[-1].chunk_position == "last"  # pyright: ignore[reportAttributeAccessIssue]
    sequence = next(r for r in runs.runs if r["name"] == "RunnableSequence")
    members = [r for r in runs.runs if r["name"] == "ChatOpenAI"]
    assert len(members) == 3
    assert {r["parent"] for r in members} == {sequence["id"]}


def test_langgraph_messages_stream_shows_only_the_fused_answer(
    chat_openai: Callable[..., ChatOpenAI],
) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    llm = ChatFusion(candidates=[chat_openai("a"), chat_openai("b")], fusor=chat_openai("f"))

    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    app = graph.compile()
    streamed = [
        (chunk, meta)
        for chunk, meta in app.stream(
            {"messages": [("human", "graph question")]},  # pyright: ignore[reportArgumentType]
            stream_mode="messages",
        )
    ]
    # LangGraph types invoke/stream with the state TypedDict; users pass message tuples
    state: Any = app.invoke({"messages": [("human", "graph question")]})  # pyright: ignore[reportArgumentType]
    final = state["messages"][-1]
    text = "".join(str(chunk.content) for chunk, _ in streamed)  # pyright: ignore[reportAttributeAccessIssue]
    assert text == final.content  # candidates' own tokens (tagged nostream) are not in it
    meta_nodes = {meta["langgraph_node"] for _, meta in streamed}  # pyright: ignore[reportArgumentType,reportCallIssue]
    assert meta_nodes == {"answer"}
    assert len(streamed) > 2
