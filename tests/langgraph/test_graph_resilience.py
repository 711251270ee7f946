"""A fusion node under stress: a straggling candidate is cancelled by the quorum or deadline
instead of stalling the graph, and node retries never multiply polyfuse's own retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from graph_helpers import agent_responder
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import RetryPolicy

from langchain_polyfuse import (
    ChatFusion,
    FusionNode,
    FusionState,
    fusion_retry_on,
    fusion_retry_policy,
)
from polyfuse import (
    AggregationError,
    InvalidRequestError,
    NoCandidatesError,
    OpenAIEndpoint,
    Pool,
    ServerError,
)
from polyfuse.testing import FakeOpenAIServer, Fault, LatencyModel

# every third request the fake serves takes 5000x longer (50 s): far past any test's patience
STRAGGLER = LatencyModel(ttft_s=0.01, straggler_every=3, straggler_factor=5000)


def _graph_with_a_next_step(model: ChatFusion) -> Any:
    """fusion -> after -> END; ``after`` records that the graph moved on."""

    def after(state: FusionState) -> dict[str, Any]:
        return {"messages": [("human", "next step ran")]}

    graph = StateGraph(FusionState)
    graph.add_node("fusion", FusionNode(model, record_key="fusions"))
    graph.add_node("after", after)
    graph.add_edge(START, "fusion")
    graph.add_edge("fusion", "after")
    graph.add_edge("after", END)
    return graph.compile()


@pytest.mark.parametrize("policy", [{"quorum": 2}, {"deadline": 0.5}], ids=["quorum", "deadline"])
def test_a_straggler_is_cancelled_and_the_graph_moves_on(
    make_fake: Callable[..., FakeOpenAIServer], url: str, policy: dict[str, Any]
) -> None:
    make_fake(responder=agent_responder, latency=STRAGGLER)
    model = ChatFusion(base_url=url, endpoints=["a", "b", "c"], fusor="fusor-model", **policy)
    parts = list(
        _graph_with_a_next_step(model).stream(
            {"messages": [("human", "slow question")]}, stream_mode=["custom", "values"]
        )
    )
    state = [value for mode, value in parts if mode == "values"][-1]
    assert state["messages"][-1].content == "next step ran"
    fused = state["messages"][-2]
    assert fused.content.startswith("Answer 0: slow question")

    (record,) = state["fusions"]
    statuses = sorted(c["status"] for c in record["candidates"])
    assert statuses == ["cancelled", "ok", "ok"]
    (cancelled,) = [c for c in record["candidates"] if c["status"] == "cancelled"]
    # progress showed the cancellation as it happened, then a fusion of the two survivors
    events = [e for mode, e in parts if mode == "custom"]
    (failed,) = [e for e in events if e["polyfuse"] == "candidate_failed"]
    assert (failed["backend"], failed["status"]) == (cancelled["backend"], "cancelled")
    assert events[-1]["polyfuse"] == "fusion_done" and events[-1]["succeeded"] == 2


def _failing_graph(url: str, retry_policy: RetryPolicy) -> Any:
    endpoint = OpenAIEndpoint(url, "fake-model", max_retries=1, backoff_base=0.01, supports_n=False)
    graph = StateGraph(MessagesState)
    graph.add_node(
        "fusion", FusionNode(ChatFusion(pool=Pool.repeat(endpoint, 2))), retry_policy=retry_policy
    )
    graph.add_edge(START, "fusion")
    return graph.compile()


@pytest.mark.parametrize(
    ("policy", "requests"),
    [
        # LangGraph's default retry_on retries NoCandidatesError: 3 node attempts x 4 requests
        (RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False), 12),
        # the fusion policy leaves retries to polyfuse: 2 candidates x (1 try + 1 retry)
        (fusion_retry_policy(max_attempts=3, initial_interval=0.01, jitter=False), 4),
    ],
    ids=["langgraph-default", "fusion_retry_policy"],
)
def test_node_retries_do_not_multiply_polyfuse_retries(
    make_fake: Callable[..., FakeOpenAIServer], url: str, policy: RetryPolicy, requests: int
) -> None:
    fake = make_fake()
    fake.inject(Fault("status", status=503, times=100))
    with pytest.raises(NoCandidatesError, match="all 2 candidates failed"):
        _failing_graph(url, policy).invoke({"messages": [("human", "down?")]})
    assert len(fake.requests) == requests


def test_fusion_retry_on() -> None:
    server_error = ServerError("down", endpoint="e", status_code=503)
    assert not fusion_retry_on(NoCandidatesError([("#0 (e)", server_error)]))
    assert not fusion_retry_on(AggregationError("the fusor failed"))
    assert not fusion_retry_on(server_error)
    assert fusion_retry_on(ConnectionResetError("reset by peer"))  # not polyfuse's: retried
    assert not fusion_retry_on(ValueError("a bug"))  # as LangGraph's default
    with pytest.raises(InvalidRequestError, match="sets retry_on itself"):
        fusion_retry_policy(retry_on=ValueError)
