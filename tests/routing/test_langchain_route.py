"""ChatFusion with ``route``: only the routed models are asked, tools bound or not."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr
from routing_helpers import PRICES, planted_records, query

from langchain_polyfuse import ChatFusion
from polyfuse import OpenAIEndpoint
from polyfuse.routing import KnnRouter, RoutingTable, WordLlamaEmbedder
from polyfuse.routing.loaders import ModelPrice
from polyfuse.testing import FakeOpenAIServer

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


@pytest.fixture(scope="module")
def router_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = RoutingTable.from_records(planted_records(40))
    embedder = WordLlamaEmbedder()
    knn = KnnRouter(k=10).fit(
        table,
        embedder.embed(table.queries),
        embedder_id=embedder.id,
        prices={m: ModelPrice(*p) for m, p in PRICES.items()},
    )
    return knn.save(tmp_path_factory.mktemp("router") / "router.npz")


def _langchain_members(url: str) -> list[Any]:
    return [
        ChatOpenAI(base_url=url, model=m, api_key=SecretStr("sk-test"), max_retries=0)
        for m in PRICES
    ]


def _endpoint_members(url: str) -> list[Any]:
    return [OpenAIEndpoint(url, m, api_key=None) for m in PRICES]


@pytest.mark.parametrize("members", [_langchain_members, _endpoint_members])
@pytest.mark.parametrize("tools", [False, True])
def test_chat_fusion_asks_only_the_routed_models(
    router_file: Path, fake: FakeOpenAIServer, fake_url: str, members: Any, tools: bool
) -> None:
    kind = "candidates" if members is _langchain_members else "endpoints"
    fusor = OpenAIEndpoint(fake_url, "fusor-model", api_key=None)
    model: Any = ChatFusion(
        **{kind: members(fake_url)},
        fusor=fusor,
        strategy="fuse",
        n=1,
        route={"router": str(router_file), "k": 1, "task": "math"},
    )
    if tools:
        model = model.bind_tools([WEATHER_TOOL], tool_choice="any")
    message = model.invoke(query("math", random.Random(4)))
    assert isinstance(message, AIMessage)
    asked = sorted(r["model"] for r in fake.requests if r["model"] != "fusor-model")
    assert asked == ["model-a"]
    assert message.response_metadata["fusion"]["routing"]["models"] == ["model-a"]
    if tools:
        assert all(r.get("tools") for r in fake.requests)


@pytest.mark.parametrize("members", [_langchain_members, _endpoint_members])
@pytest.mark.parametrize("tools", [False, True])
def test_chat_fusion_keeps_a_ready_routed_pool(
    router_file: Path, fake: FakeOpenAIServer, fake_url: str, members: Any, tools: bool
) -> None:
    from langchain_polyfuse import LangChainBackend
    from polyfuse.routing import CostAwareSelector, RoutedPool, load_router

    backends = [LangChainBackend(m) if isinstance(m, ChatOpenAI) else m for m in members(fake_url)]
    selector = CostAwareSelector(load_router(router_file), k=1)
    # Given in another order than the router's models: rebuilt members must stay matched.
    by_model = dict(reversed(list(zip(PRICES, backends, strict=True))))
    pool = RoutedPool(by_model, selector, task="poems")
    fusor = OpenAIEndpoint(fake_url, "fusor-model", api_key=None)
    model: Any = ChatFusion(pool=pool, fusor=fusor, strategy="fuse")
    if tools:
        model = model.bind_tools([WEATHER_TOOL], tool_choice="any")
    message = model.invoke(query("poems", random.Random(5)))
    asked = sorted(r["model"] for r in fake.requests if r["model"] != "fusor-model")
    assert asked == ["model-b"]
    routing = message.response_metadata["fusion"]["routing"]
    assert routing["models"] == ["model-b"] and routing["task"] == "poems"
