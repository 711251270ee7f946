"""A preset's ``route = {...}`` option builds a RoutedPool over the preset's endpoints."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from routing_helpers import PRICES, planted_records, query

from polyfuse.errors import InvalidRequestError
from polyfuse.presets import load_config
from polyfuse.registry import PresetRegistry
from polyfuse.routing import KnnRouter, RoutingTable, WordLlamaEmbedder
from polyfuse.routing.loaders import ModelPrice
from polyfuse.testing import FakeOpenAIServer


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


def _config(url: str, router: Path, models: list[str], **route: Any) -> dict[str, Any]:
    return {
        "endpoints": {f"ep-{m}": {"base_url": url, "model": m} for m in models},
        "presets": {
            "routed": {
                "pool": [f"ep-{m}" for m in models],
                "n": 1,
                "strategy": "vote",
                "route": {"router": str(router), **route},
            }
        },
    }


async def test_a_routed_preset_asks_only_the_chosen_models(
    router_file: Path, fake: FakeOpenAIServer, fake_url: str
) -> None:
    config = load_config(_config(fake_url, router_file, list(PRICES), k=1, task="math"))
    registry = PresetRegistry(config)
    try:
        result = await registry.fusion("routed").arun(query("math", random.Random(3)))
    finally:
        await registry.aclose()
    assert sorted(r["model"] for r in fake.requests) == ["model-a"]
    assert result.metadata["routing"]["models"] == ["model-a"]


def test_a_router_model_unknown_to_the_preset_is_named(router_file: Path, fake_url: str) -> None:
    registry = PresetRegistry(load_config(_config(fake_url, router_file, ["model-a", "model-b"])))
    with pytest.raises(InvalidRequestError, match="routes to model-c, which the pool"):
        registry.fusion("routed")
    with pytest.raises(InvalidRequestError, match=r"route\.scenaro: Extra inputs"):
        load_config(_config(fake_url, router_file, list(PRICES), scenaro="balance"))


async def test_fusion_spec_route_builds_a_routed_pool(
    router_file: Path, fake: FakeOpenAIServer, fake_url: str
) -> None:
    from polyfuse import FusionSpec, OpenAIEndpoint
    from polyfuse.routing import RoutedPool

    backends = [OpenAIEndpoint(fake_url, m, api_key=None) for m in PRICES]
    spec = FusionSpec(
        pool=backends,
        strategy="vote",
        route={"router": str(router_file), "k": 2, "task": "poems"},
    )
    fusion = spec.build()
    assert isinstance(fusion.pool, RoutedPool)
    assert fusion.pool.selector.tolerance is None
    cheap = FusionSpec(
        pool=backends, strategy="vote", route={"router": str(router_file), "tolerance": 0.6}
    ).build()
    assert isinstance(cheap.pool, RoutedPool) and cheap.pool.selector.tolerance == 0.6
    async with fusion:
        result = await fusion.arun(query("poems", random.Random(9)))
    chosen = result.metadata["routing"]["models"]
    assert chosen[0] == "model-b" and len(chosen) == 2
    assert {r["model"] for r in fake.requests} == set(chosen)
