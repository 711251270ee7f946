"""FusionNode as the model step of tool-calling agents: a ReAct loop with ``ToolNode`` and
``tools_condition`` (two tools), and LangChain's ``create_agent`` with a ChatFusion model."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from graph_helpers import AGENT_ANSWER, AGENT_QUESTION, TOOLS, agent_model, react_agent
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from langchain_polyfuse import FusionMiddleware
from polyfuse.testing import FakeOpenAIServer


def _check_transcript(messages: list[Any]) -> None:
    kinds = [
        (type(m).__name__, [c["name"] for c in getattr(m, "tool_calls", None) or ()])
        for m in messages
    ]
    assert kinds == [
        ("HumanMessage", []),
        ("AIMessage", ["get_weather"]),
        ("ToolMessage", []),
        ("AIMessage", ["get_time"]),
        ("ToolMessage", []),
        ("AIMessage", []),
    ]
    weather_call, time_call = messages[1].tool_calls[0], messages[3].tool_calls[0]
    assert weather_call["args"] == time_call["args"] == {"city": "Rome"}
    tool_results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in tool_results] == [weather_call["id"], time_call["id"]]
    assert [m.content for m in tool_results] == ["It is sunny in Rome", "It is 12:00 in Rome"]
    assert messages[-1].content == AGENT_ANSWER


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_react_agent_with_two_tools(agent_fake: FakeOpenAIServer, url: str, run: str) -> None:
    app = react_agent(agent_model(url))
    inputs = {"messages": [("human", AGENT_QUESTION)]}
    state = app.invoke(inputs) if run == "sync" else await app.ainvoke(inputs)
    _check_transcript(state["messages"])

    # three model steps, each 3 candidates + 1 fusor call; one record per step
    assert len(agent_fake.requests) == 12
    records = state["fusions"]
    assert len(records) == 3
    proposed = [
        {call["function"]["name"] for c in record["candidates"] for call in c["tool_calls"] or ()}
        for record in records
    ]
    assert proposed == [{"get_weather"}, {"get_time"}, set()]
    assert all(len(r["candidates"]) == 3 for r in records)
    # every candidate and the fusor saw both tools
    assert all(len(r["tools"]) == 2 for r in agent_fake.requests[:4])


def test_agent_stream_shows_each_step(agent_fake: FakeOpenAIServer, url: str) -> None:
    app = react_agent(agent_model(url))
    parts = list(
        app.stream({"messages": [("human", AGENT_QUESTION)]}, stream_mode=["updates", "custom"])
    )
    steps = [next(iter(update)) for mode, update in parts if mode == "updates"]
    assert steps == ["agent", "tools", "agent", "tools", "agent"]
    finished = [
        e for mode, e in parts if mode == "custom" and e["polyfuse"] == "candidate_finished"
    ]
    assert [e["tool_calls"] for e in finished] == [["get_weather"]] * 3 + [["get_time"]] * 3 + [
        []
    ] * 3
    assert all(e["node"] == "agent" for e in finished)


def test_create_agent_with_a_chat_fusion_model(agent_fake: FakeOpenAIServer, url: str) -> None:
    agent = create_agent(agent_model(url), tools=TOOLS, system_prompt="You are a travel assistant.")
    state = agent.invoke({"messages": [("human", AGENT_QUESTION)]})
    _check_transcript(state["messages"])
    first_candidate = agent_fake.requests[0]["messages"]
    assert first_candidate[0] == {"role": "system", "content": "You are a travel assistant."}
    fusion = state["messages"][1].response_metadata["fusion"]
    assert [c["tool_calls"][0]["function"]["name"] for c in fusion["candidates"]] == [
        "get_weather"
    ] * 3
    assert isinstance(state["messages"][-1], AIMessage)


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_fusion_middleware_streams_progress_and_keeps_records(
    agent_fake: FakeOpenAIServer, url: str, run: str
) -> None:
    agent = create_agent(agent_model(url), tools=TOOLS, middleware=[FusionMiddleware()])
    inputs = {"messages": [("human", AGENT_QUESTION)]}
    modes = ["custom", "values"]
    if run == "sync":
        parts = list(agent.stream(inputs, stream_mode=modes))
    else:
        parts = [part async for part in agent.astream(inputs, stream_mode=modes)]
    state = [value for mode, value in parts if mode == "values"][-1]
    _check_transcript(state["messages"])
    records = state["fusions"]
    assert [r["message"]["content"] for r in records][-1] == AGENT_ANSWER
    assert [len(r["candidates"]) for r in records] == [3, 3, 3]
    done = [e for mode, e in parts if mode == "custom" and e["polyfuse"] == "fusion_done"]
    if run == "async" and sys.version_info < (3, 11):
        assert done == []  # LangGraph's stream writer needs 3.11 in async nodes
        return
    assert [e["finish_reason"] for e in done] == ["tool_calls", "tool_calls", "stop"]
    assert {e["node"] for e in done} == {"model"}


def test_human_review_of_fused_tool_calls_never_reruns_the_model(
    agent_fake: FakeOpenAIServer, url: str
) -> None:
    agent = create_agent(
        agent_model(url),
        tools=TOOLS,
        middleware=[
            FusionMiddleware(),
            HumanInTheLoopMiddleware(interrupt_on={"get_weather": True}),
        ],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "review"}}
    paused = agent.invoke({"messages": [("human", AGENT_QUESTION)]}, config)
    (request,) = paused["__interrupt__"]
    assert [a["name"] for a in request.value["action_requests"]] == ["get_weather"]
    assert len(agent_fake.requests) == 4  # one fusion: 3 candidates and the fusor

    state = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    _check_transcript(state["messages"])
    # two more fusion steps after the approval; the reviewed one was not run again
    assert len(agent_fake.requests) == 12
    assert len(state["fusions"]) == 3
