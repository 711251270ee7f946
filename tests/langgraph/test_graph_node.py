"""FusionNode in real LangGraph graphs: chat graphs (sync and async), the fusion record in the
state, custom state keys and schemas, and errors that say what to change."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated, Any

import pytest
from graph_helpers import AGENT_QUESTION, TOOLS
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import ConfigurableField, RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel
from typing_extensions import TypedDict

from langchain_polyfuse import ChatFusion, FusionNode, FusionState, add_records
from polyfuse import FusionResult, InvalidRequestError
from polyfuse.testing import FakeOpenAIServer


def _chat_fusion(url: str, **settings: Any) -> ChatFusion:
    return ChatFusion(base_url=url, model="fake-model", n=3, supports_n=False, **settings)


def _one_node_graph(node: FusionNode, state: type = MessagesState, **compile: Any) -> Any:
    graph = StateGraph(state)
    graph.add_node(node)
    graph.add_edge(START, node.name)
    return graph.compile(**compile)


def test_chat_graph_appends_the_fused_answer(agent_fake: FakeOpenAIServer, url: str) -> None:
    app = _one_node_graph(FusionNode(_chat_fusion(url)))
    out = app.invoke({"messages": [HumanMessage("Why is the sky blue?")]})
    _, answer = out["messages"]
    assert isinstance(answer, AIMessage)
    assert answer.content == "Answer 0: Why is the sky blue?"
    fusion = answer.response_metadata["fusion"]
    assert [c["status"] for c in fusion["candidates"]] == ["ok", "ok", "ok"]
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    # three candidate requests and one fusor request, whose prompt holds the drafts
    assert len(agent_fake.requests) == 4
    assert "<draft" in agent_fake.requests[-1]["messages"][-1]["content"]


async def test_async_graph_runs_the_node_natively(agent_fake: FakeOpenAIServer, url: str) -> None:
    app = _one_node_graph(FusionNode(_chat_fusion(url), record_key="fusions"), FusionState)
    out = await app.ainvoke({"messages": [("human", "async question")]})
    assert out["messages"][-1].content == "Answer 0: async question"
    assert len(out["fusions"]) == 1
    assert len(agent_fake.requests) == 4


def test_records_are_json_and_round_trip(agent_fake: FakeOpenAIServer, url: str) -> None:
    node = FusionNode(_chat_fusion(url), record_key="fusions")
    app = _one_node_graph(node, FusionState, checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    app.invoke({"messages": [("human", "first")]}, config)
    state = app.invoke({"messages": [("human", "second")]}, config)
    assert [m.content for m in state["messages"]] == [
        "first",
        "Answer 0: first",
        "second",
        "Answer 0: second",
    ]
    assert len(state["fusions"]) == 2  # one record per fusion step, appended by add_records
    record = state["fusions"][-1]
    assert json.loads(json.dumps(record)) == record  # plain JSON, as checkpointers store it
    result = FusionResult.model_validate(record)
    assert result.content == state["messages"][-1].content == "Answer 0: second"
    assert [c.status for c in result.candidates] == ["ok", "ok", "ok"]
    assert result.usage.total.calls == 4
    assert result.aggregation.method == "fuse"


def test_custom_state_keys_and_a_system_prompt(agent_fake: FakeOpenAIServer, url: str) -> None:
    class Review(TypedDict):
        draft: str
        reviews: Annotated[list[AnyMessage], add_messages]
        last_fusion: dict[str, Any]

    node = FusionNode(
        _chat_fusion(url),
        system_prompt="You are a strict reviewer.",
        input_key="draft",
        output_key="reviews",
        record_key="last_fusion",
        name="review",
    )
    app = _one_node_graph(node, Review)
    out = app.invoke({"draft": "Review this essay"})
    assert [m.content for m in out["reviews"]] == ["Answer 0: Review this essay"]
    assert out["last_fusion"]["message"]["content"] == "Answer 0: Review this essay"
    candidate_request = agent_fake.requests[0]["messages"]
    assert candidate_request[0] == {"role": "system", "content": "You are a strict reviewer."}
    assert candidate_request[1]["content"] == "Review this essay"


def test_pydantic_state(agent_fake: FakeOpenAIServer, url: str) -> None:
    class Chat(BaseModel):
        messages: Annotated[list[AnyMessage], add_messages]
        fusions: Annotated[list[dict[str, Any]], add_records] = []

    app = _one_node_graph(FusionNode(_chat_fusion(url), record_key="fusions"), Chat)
    out = app.invoke(Chat(messages=[HumanMessage("pydantic state")]))
    assert out["messages"][-1].content == "Answer 0: pydantic state"
    assert out["fusions"][0]["candidates"][0]["content"] == "Answer 0: pydantic state"


def test_the_node_runs_outside_a_graph(agent_fake: FakeOpenAIServer, url: str) -> None:
    node = FusionNode(_chat_fusion(url), record_key="fusion")
    update = node.invoke({"messages": ["plain call"]})
    assert update["messages"][0].content == "Answer 0: plain call"
    assert update["fusion"]["aggregation"]["method"] == "fuse"


def test_bad_settings_and_states_fail_clearly(url: str) -> None:
    model = _chat_fusion(url)
    with pytest.raises(InvalidRequestError, match="FusionNode needs a ChatFusion"):
        FusionNode(model.with_structured_output({"type": "object", "title": "x"}))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="bind the tools yourself; not both"):
        FusionNode(model.bind(temperature=0.1), tools=[])
    with pytest.raises(InvalidRequestError, match="tool_choice= needs tools="):
        FusionNode(model, tool_choice="any")
    node = FusionNode(model, input_key="question")
    with pytest.raises(InvalidRequestError, match=r"state\['question'\], which is missing"):
        node.invoke({"messages": ["hi"]})
    with pytest.raises(InvalidRequestError, match="is empty"):
        node.invoke({"question": []})


def test_bound_models_keep_their_arguments(agent_fake: FakeOpenAIServer, url: str) -> None:
    app = _one_node_graph(FusionNode(_chat_fusion(url).bind(temperature=0.25, max_tokens=77)))
    app.invoke({"messages": [("human", "bound")]})
    assert {r["temperature"] for r in agent_fake.requests} == {0.25}
    assert {r["max_tokens"] for r in agent_fake.requests} == {77}


def test_langchain_polyfuse_imports_without_langgraph() -> None:
    code = (
        "import sys\n"
        "sys.modules['langgraph'] = None\n"  # make `import langgraph` fail
        "import langchain_polyfuse as lp\n"
        "print(lp.ChatFusion.__name__)\n"
        "try:\n    lp.FusionNode\nexcept ImportError as exc:\n    print('lazy', type(exc).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["ChatFusion", "lazy", "ModuleNotFoundError"]


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_parallel_fusion_nodes_keep_their_own_records_and_progress(
    agent_fake: FakeOpenAIServer, url: str, run: str
) -> None:
    class Debate(TypedDict):
        pro: str
        con: str
        messages: Annotated[list[AnyMessage], add_messages]
        pro_fusion: dict[str, Any]
        con_fusion: dict[str, Any]

    graph = StateGraph(Debate)
    for side in ("pro", "con"):
        model = ChatFusion(base_url=url, endpoints=[f"{side}-a", f"{side}-b"], fusor=side)
        graph.add_node(FusionNode(model, input_key=side, record_key=f"{side}_fusion", name=side))
        graph.add_edge(START, side)
    app = graph.compile()
    inputs = {"pro": "argue for tabs", "con": "argue for spaces", "messages": []}
    modes = ["custom", "values"]
    if run == "sync":
        parts = list(app.stream(inputs, stream_mode=modes))
    else:
        parts = [part async for part in app.astream(inputs, stream_mode=modes)]
    state = [value for mode, value in parts if mode == "values"][-1]
    for side, question in (("pro", "argue for tabs"), ("con", "argue for spaces")):
        record = state[f"{side}_fusion"]
        assert {c["backend"] for c in record["candidates"]} == {f"{side}-a", f"{side}-b"}
        assert {c["content"] for c in record["candidates"]} == {f"Answer 0: {question}"}
        assert record["aggregation"]["calls"][0]["backend"] == side
        finished = [
            e["backend"]
            for mode, e in parts
            if mode == "custom" and e["polyfuse"] == "candidate_finished" and e["node"] == side
        ]
        assert sorted(finished) == [f"{side}-a", f"{side}-b"]
    assert sorted(m.content for m in state["messages"]) == [  # pyright: ignore[reportAttributeAccessIssue]
        "Answer 0: argue for spaces",
        "Answer 0: argue for tabs",
    ]


def test_configurable_fields_are_set_per_run(agent_fake: FakeOpenAIServer, url: str) -> None:
    model = _chat_fusion(url).configurable_fields(n=ConfigurableField(id="n"))
    app = _one_node_graph(FusionNode(model, tools=TOOLS, record_key="fusions"), FusionState)
    out = app.invoke({"messages": [("human", AGENT_QUESTION)]}, {"configurable": {"n": 2}})
    assert len(out["fusions"][0]["candidates"]) == 2
    assert out["messages"][-1].tool_calls[0]["name"] == "get_weather"
    assert len(agent_fake.requests) == 3
    assert all(len(r["tools"]) == 2 for r in agent_fake.requests)
