"""Streaming a graph with a FusionNode: candidate progress in ``custom`` mode, the fused answer
token by token in ``messages`` mode (and nothing else), the state update in ``updates`` mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from graph_helpers import agent_responder
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph

from langchain_polyfuse import ChatFusion, FusionNode
from polyfuse.testing import FakeOpenAIServer, Fault

MODES = ["messages", "custom", "updates"]
QUESTION = {"messages": [("human", "Why do cats purr so much?")]}
ANSWER = "Answer 0: Why do cats purr so much?"


def _graph(model: ChatFusion) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("answer", FusionNode(model))
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


def _panel(url: str) -> ChatFusion:
    return ChatFusion(base_url=url, endpoints=["a", "b", "c"], fusor="fusor-model")


def _check(parts: list[tuple[str, Any]]) -> None:
    """The three modes, asserted on content and order."""
    tokens = [(i, chunk, meta) for i, (_, (chunk, meta)) in _only(parts, "messages")]
    custom = [(i, event) for i, (_, event) in _only(parts, "custom")]
    updates = [update for _, (_, update) in _only(parts, "updates")]

    # messages: the fused answer and nothing else, token by token, from the fusion node
    assert all(isinstance(chunk, AIMessageChunk) for _, chunk, _ in tokens)
    assert "".join(str(chunk.content) for _, chunk, _ in tokens) == ANSWER
    assert len([c for _, c, _ in tokens if c.content]) == len(ANSWER.split())
    assert {meta["langgraph_node"] for _, _, meta in tokens} == {"answer"}

    # custom: every candidate's progress, then the aggregation, then the summary
    names = [event["polyfuse"] for _, event in custom]
    assert names[:3] == ["candidate_started"] * 3
    assert sorted(names[3:6]) == ["candidate_finished"] * 3
    assert names[6:] == ["aggregation_started", "fusion_done"]
    finished = [event for _, event in custom if event["polyfuse"] == "candidate_finished"]
    assert sorted(e["backend"] for e in finished) == ["a", "b", "c"]
    assert all(e["node"] == "answer" and e["status"] == "ok" for e in finished)
    assert all(e["latency_s"] >= 0 and e["usage"]["total_tokens"] > 0 for e in finished)
    done = custom[-1][1]
    assert (done["n"], done["succeeded"], done["method"]) == (3, 3, "fuse")
    assert done["usage"]["calls"] == 4

    # order: candidates are in before the first fused token; the summary follows the answer
    first_token = min(i for i, chunk, _ in tokens if chunk.content)
    last_token = max(i for i, chunk, _ in tokens if chunk.content)
    aggregation = next(i for i, e in custom if e["polyfuse"] == "aggregation_started")
    assert max(i for i, e in custom if e["polyfuse"] == "candidate_finished") < first_token
    assert aggregation < first_token and last_token < custom[-1][0]

    # updates: the node's state update, once
    assert len(updates) == 1
    (message,) = updates[0]["answer"]["messages"]
    assert isinstance(message, AIMessage) and message.content == ANSWER


def _only(parts: list[tuple[str, Any]], mode: str) -> list[tuple[int, tuple[str, Any]]]:
    return [(i, part) for i, part in enumerate(parts) if part[0] == mode]


def test_sync_stream_in_three_modes(agent_fake: FakeOpenAIServer, url: str) -> None:
    _check(list(_graph(_panel(url)).stream(QUESTION, stream_mode=MODES)))


async def test_async_stream_in_three_modes(agent_fake: FakeOpenAIServer, url: str) -> None:
    _check([part async for part in _graph(_panel(url)).astream(QUESTION, stream_mode=MODES)])


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_custom_mode_alone_still_reports_progress(
    agent_fake: FakeOpenAIServer, url: str, run: str
) -> None:
    # without "messages" the model is invoked, not streamed: progress must still arrive
    app = _graph(_panel(url))
    if run == "sync":
        events = list(app.stream(QUESTION, stream_mode="custom"))
    else:
        events = [e async for e in app.astream(QUESTION, stream_mode="custom")]
    assert [e["polyfuse"] for e in events].count("candidate_finished") == 3
    assert events[-1]["polyfuse"] == "fusion_done"


def test_a_failed_candidate_is_reported(
    make_fake: Callable[..., FakeOpenAIServer], url: str
) -> None:
    fake = make_fake(responder=agent_responder)
    fake.inject(Fault("status", status=400, match_model="b"))
    events = list(_graph(_panel(url)).stream(QUESTION, stream_mode="custom"))
    (failed,) = [e for e in events if e["polyfuse"] == "candidate_failed"]
    assert failed["backend"] == "b" and failed["status"] == "failed"
    assert "HTTP 400" in failed["error"]
    assert events[-1]["succeeded"] == 2


def test_langchain_candidates_tokens_stay_out_of_the_messages_stream(
    agent_fake: FakeOpenAIServer, url: str
) -> None:
    def member(model: str) -> ChatOpenAI:
        return ChatOpenAI(base_url=url, model=model, api_key="k", stream_usage=True)  # type: ignore[arg-type]

    llm = ChatFusion(candidates=[member("a"), member("b"), member("c")], fusor=member("fusor"))
    parts = list(_graph(llm).stream(QUESTION, stream_mode=MODES))
    _check(parts)
    # the members did stream (they are ChatOpenAI runs), but only the fusion reached the stream
    assert all(r.get("stream") for r in agent_fake.requests)
