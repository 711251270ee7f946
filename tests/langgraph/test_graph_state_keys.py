"""A FusionNode refuses to write to keys its graph's state does not have (LangGraph would drop
the write silently), before any candidate is sampled."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.messages import AnyMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel
from typing_extensions import TypedDict

from langchain_polyfuse import ChatFusion, FusionNode, FusionState
from polyfuse import InvalidRequestError
from polyfuse.testing import FakeOpenAIServer


def _app(state: Any, node: FusionNode) -> Any:
    graph = StateGraph(state)
    graph.add_node("answer", node)
    graph.add_edge(START, "answer")
    return graph.compile()


def test_record_key_missing_from_the_schema_is_a_clear_error(
    fake: FakeOpenAIServer, url: str
) -> None:
    node = FusionNode(ChatFusion(base_url=url, model="m", n=2), record_key="last_fusion")
    with pytest.raises(InvalidRequestError, match=r"record_key='last_fusion' is not a key") as err:
        _app(MessagesState, node).invoke({"messages": [("human", "hi")]})
    assert "messages" in str(err.value) and "FusionState" in str(err.value)
    assert fake.requests == []  # refused before sampling


async def test_output_key_missing_is_refused_in_async_graphs_too(
    fake: FakeOpenAIServer, url: str
) -> None:
    node = FusionNode(ChatFusion(base_url=url, model="m", n=2), output_key="answers")
    with pytest.raises(InvalidRequestError, match=r"output_key='answers'"):
        await _app(MessagesState, node).ainvoke({"messages": [("human", "hi")]})
    assert fake.requests == []


class Review(TypedDict):
    draft: str
    reviews: Annotated[list[AnyMessage], add_messages]
    last_fusion: dict[str, Any]


def test_keys_of_the_schema_are_written(fake: FakeOpenAIServer, url: str) -> None:
    model = ChatFusion(base_url=url, model="m", n=2)
    node = FusionNode(model, input_key="draft", output_key="reviews", record_key="last_fusion")
    state = _app(Review, node).invoke({"draft": "A draft."})
    assert state["reviews"][-1].content and state["last_fusion"]["candidates"]
    fused = _app(FusionState, FusionNode(model, record_key="fusions")).invoke(
        {"messages": [("human", "hi")]}
    )
    assert len(fused["fusions"]) == 1


class PydanticState(BaseModel):
    messages: Annotated[list[AnyMessage], add_messages]


def test_pydantic_state_fields_are_the_schema(fake: FakeOpenAIServer, url: str) -> None:
    node = FusionNode(ChatFusion(base_url=url, model="m", n=2), record_key="record")
    with pytest.raises(InvalidRequestError, match="record_key='record'"):
        _app(PydanticState, node).invoke({"messages": [("human", "hi")]})


def test_outside_a_graph_nothing_is_checked(fake: FakeOpenAIServer, url: str) -> None:
    node = FusionNode(ChatFusion(base_url=url, model="m", n=2), record_key="anything")
    update = node.invoke({"messages": [("human", "hi")]})
    assert set(update) == {"messages", "anything"}
