"""A routed pool asks only the chosen models (asserted on the fake server's request log)."""

from __future__ import annotations

import random

import pytest
from routing_helpers import PRICES, planted_records, query

from polyfuse import ChatRequest, Fusion, OpenAIEndpoint
from polyfuse.aggregators import Fuse, MajorityVote, MixtureOfAgents
from polyfuse.errors import InvalidRequestError
from polyfuse.routing import (
    CostAwareSelector,
    KnnRouter,
    RoutedPool,
    RoutingTable,
    WordLlamaEmbedder,
)
from polyfuse.routing.loaders import ModelPrice
from polyfuse.testing import FakeOpenAIServer


@pytest.fixture(scope="module")
def router() -> KnnRouter:
    table = RoutingTable.from_records(planted_records(40))
    embedder = WordLlamaEmbedder()
    prices = {m: ModelPrice(*p) for m, p in PRICES.items()}
    knn = KnnRouter(k=10)
    knn.fit(table, embedder.embed(table.queries), embedder_id=embedder.id, prices=prices)
    return knn


def _members(url: str) -> dict[str, OpenAIEndpoint]:
    return {m: OpenAIEndpoint(url, m, api_key=None, name=m) for m in PRICES}


def _asked(fake: FakeOpenAIServer) -> list[str]:
    return sorted(r["model"] for r in fake.requests)


async def test_only_the_chosen_model_is_asked(
    router: KnnRouter, fake: FakeOpenAIServer, fake_url: str
) -> None:
    pool = RoutedPool(_members(fake_url), CostAwareSelector(router, "performance-first"))
    async with Fusion(pool, MajorityVote()) as fusion:
        math = await fusion.arun(query("math", random.Random(1)))
        assert _asked(fake) == ["model-a"]
        fake.requests.clear()
        poem = await fusion.arun(query("poems", random.Random(2)))
        assert _asked(fake) == ["model-b"]
    routing = math.metadata["routing"]
    assert routing["models"] == ["model-a"] and routing["scenario"] == "performance-first"
    assert set(routing["scores"]) == set(PRICES) and routing["task"] == "math"
    assert [c.model for c in math.candidates] == ["model-a"]
    assert poem.metadata["routing"]["models"] == ["model-b"] and poem.metadata["n"] == 1


@pytest.mark.parametrize("aggregator", ["fuse", "moa", "vote"])
async def test_top_k_composes_with_aggregators(
    router: KnnRouter, fake: FakeOpenAIServer, fake_url: str, aggregator: str
) -> None:
    fusor = OpenAIEndpoint(fake_url, "fusor", api_key=None, name="fusor")
    chosen = {
        "fuse": Fuse(fusor),
        "moa": MixtureOfAgents(fusor, layers=2),
        "vote": MajorityVote(),
    }[aggregator]
    pool = RoutedPool(_members(fake_url), CostAwareSelector(router, k=2), task="poems")
    async with Fusion(pool, chosen) as fusion:
        result = await fusion.arun(query("poems", random.Random(3)))
    chosen_models = result.metadata["routing"]["models"]
    assert chosen_models[0] == "model-b" and len(chosen_models) == 2
    assert "model-a" not in chosen_models
    asked = {r["model"] for r in fake.requests} - {"fusor"}
    assert asked == set(chosen_models)
    assert sorted(c.model or "" for c in result.candidates) == sorted(chosen_models)


def test_models_unknown_to_the_pool_or_the_router_are_named(router: KnnRouter) -> None:
    members = _members("http://127.0.0.1:9/v1")
    del members["model-c"]
    with pytest.raises(InvalidRequestError, match="routes to model-c, which the pool"):
        RoutedPool(members, CostAwareSelector(router))
    extra = {**_members("http://127.0.0.1:9/v1"), "model-z": members["model-a"]}
    with pytest.raises(InvalidRequestError, match="no logs of model-z"):
        RoutedPool(extra, CostAwareSelector(router))


async def test_from_backends_matches_models_by_id(
    router: KnnRouter, fake: FakeOpenAIServer, fake_url: str
) -> None:
    backends = [OpenAIEndpoint(fake_url, m, api_key=None, name=f"ep-{m}") for m in PRICES]
    pool = RoutedPool.from_backends(backends, CostAwareSelector(router), task="math")
    async with Fusion(pool, MajorityVote()) as fusion:
        await fusion.arun(query("math", random.Random(4)))
    assert _asked(fake) == ["model-a"]
    with pytest.raises(InvalidRequestError, match="routes to model-c"):
        RoutedPool.from_backends(backends[:2], CostAwareSelector(router))


async def test_streamed_fusions_and_pool_sample_route_too(
    router: KnnRouter, fake: FakeOpenAIServer, fake_url: str
) -> None:
    from polyfuse.events import CandidateStarted, FusionDone

    pool = RoutedPool(_members(fake_url), CostAwareSelector(router), task="poems")
    started: list[str] = []
    done = None
    async with Fusion(pool, MajorityVote()) as fusion:
        async for event in fusion.astream(query("poems", random.Random(6))):
            if isinstance(event, CandidateStarted):
                started.append(event.backend)
            elif isinstance(event, FusionDone):
                done = event.result
    assert started == ["model-b"] and done is not None
    assert done.metadata["routing"]["models"] == ["model-b"]
    candidates = await pool.sample(query("poems", random.Random(8)))
    assert [c.model for c in candidates] == ["model-b"]


async def test_with_members_keeps_the_routing_over_new_members(
    router: KnnRouter, fake: FakeOpenAIServer, fake_url: str
) -> None:
    from polyfuse import Pool, PoolMember

    pool = RoutedPool(_members(fake_url), CostAwareSelector(router, "performance-first"))
    renamed = [
        PoolMember(OpenAIEndpoint(fake_url, m, api_key=None, name=f"new-{m}")) for m in PRICES
    ]
    rebuilt = pool.with_members(renamed)
    assert isinstance(rebuilt, RoutedPool) and rebuilt.selector is pool.selector
    chosen = await rebuilt.for_request(ChatRequest.build(query("math", random.Random(1))))
    assert [m.backend.name for m in chosen.members] == ["new-model-a"]
    with pytest.raises(InvalidRequestError, match="2 members to replace the routed pool's 3"):
        pool.with_members(renamed[:2])
    plain = Pool.panel([OpenAIEndpoint(fake_url, "x", api_key=None)])
    assert type(plain.with_members(renamed[:1])) is Pool
    with pytest.raises(InvalidRequestError, match="3 members to replace this pool's 1"):
        plain.with_members(renamed)
