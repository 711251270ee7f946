"""Routers learn a planted pattern; scenario labels match hand-computed values; files."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
from routing_helpers import PRICES, planted_records, query

from polyfuse.errors import InvalidRequestError
from polyfuse.routing import (
    CostAwareSelector,
    EmbeddingCache,
    KnnRouter,
    MfRouter,
    MlpRouter,
    Router,
    RoutingRecord,
    RoutingTable,
    WordLlamaEmbedder,
    embed_texts,
    load_router,
    scenario_labels,
    scenario_scores,
)
from polyfuse.routing.loaders import ModelPrice

PRICE_MAP = {m: ModelPrice(*p) for m, p in PRICES.items()}


@pytest.fixture(scope="module")
def trained() -> tuple[RoutingTable, np.ndarray, WordLlamaEmbedder]:
    table = RoutingTable.from_records(planted_records(60))
    embedder = WordLlamaEmbedder()
    return table, embedder.embed(table.queries), embedder


def _fit(router: Router, trained: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder]) -> Router:
    table, x, embedder = trained
    return router.fit(table, x, embedder_id=embedder.id, prices=PRICE_MAP, output_tokens=100)


@pytest.mark.parametrize(
    "make", [lambda: KnnRouter(k=10), lambda: MlpRouter(epochs=30), lambda: MfRouter(8, 30)]
)
@pytest.mark.parametrize("task_known", [True, False])
def test_routers_learn_the_planted_pattern(
    trained: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder], make: object, task_known: bool
) -> None:
    router = _fit(make(), trained)  # type: ignore[operator]
    rng = random.Random(99)  # held-out queries, never logged
    selector = CostAwareSelector(router, "performance-first", embedder=trained[2])
    for task, best in (("math", "model-a"), ("poems", "model-b")):
        for _ in range(5):
            decision = selector.route(query(task, rng), task if task_known else None)
            assert decision.models == [best], (task, decision.performance)
            assert decision.task == task


def test_cost_first_picks_the_cheap_model_and_top_k_respects_the_budget(
    trained: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder],
) -> None:
    router = _fit(KnnRouter(k=10), trained)
    text = query("math", random.Random(5))
    cheap = CostAwareSelector(router, "cost-first", embedder=trained[2]).route(text, "math")
    assert cheap.models == ["model-c"]
    top2 = CostAwareSelector(router, "performance-first", k=2, embedder=trained[2]).route(text)
    assert top2.models[0] == "model-a" and len(top2.models) == 2
    costs = top2.cost_usd
    budget = (costs["model-a"] or 0) + (costs["model-c"] or 0) + 1e-9  # a + b would not fit
    tight = CostAwareSelector(router, k=3, budget_usd=budget, embedder=trained[2]).route(text)
    assert tight.models == ["model-a", "model-c"] and not tight.over_budget
    tiny = CostAwareSelector(router, budget_usd=1e-12, embedder=trained[2]).route(text)
    assert tiny.models == ["model-c"] and tiny.over_budget and "budget" in tiny.notes[0]


def _hand_table() -> RoutingTable:
    cells = [
        ("q1", "A", 1.0, 3.0),
        ("q1", "B", 0.0, 1.0),
        ("q2", "A", 0.0, 2.0),
        ("q2", "B", 1.0, 5.0),
    ]
    return RoutingTable.from_records(
        RoutingRecord(query=q, model=m, score=s, cost_usd=c, task="t") for q, m, s, c in cells
    )


def test_scenario_labels_match_hand_computed_values() -> None:
    table = _hand_table()
    # per task: score range [0, 1], cost range [1, 5]
    balance = scenario_scores(table, "balance")
    assert balance[0].tolist() == pytest.approx([0.5 - 0.5 * 0.5, 0.0])
    assert balance[1].tolist() == pytest.approx([-0.5 * 0.25, 0.5 - 0.5])
    cost_first = scenario_scores(table, "cost-first")
    assert cost_first[0].tolist() == pytest.approx([0.2 - 0.8 * 0.5, 0.0])
    assert cost_first[1].tolist() == pytest.approx([-0.8 * 0.25, 0.2 - 0.8])
    assert scenario_labels(table, "performance-first") == ["A", "B"]
    assert scenario_labels(table, "balance") == ["A", "B"]
    assert scenario_labels(table, "cost-first") == ["B", "A"]
    with pytest.raises(InvalidRequestError, match="unknown scenario 'cheap'"):
        scenario_labels(table, "cheap")


def test_cost_scenarios_need_costs() -> None:
    records = [
        RoutingRecord(query="q", model="a", score=1.0, task="t"),
        RoutingRecord(query="q", model="b", score=0.0, task="t", cost_usd=1.0),
    ]
    with pytest.raises(InvalidRequestError, match="records of a have no cost_usd"):
        scenario_scores(RoutingTable.from_records(records), "balance")


@pytest.mark.parametrize(
    "make", [lambda: KnnRouter(k=10), lambda: MlpRouter(epochs=3), lambda: MfRouter(4, 3)]
)
def test_saved_routers_load_to_the_same_predictions(
    trained: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder], make: object, tmp_path: Path
) -> None:
    table, x, _ = trained
    router = _fit(make(), trained)  # type: ignore[operator]
    path = router.save(tmp_path / "router")
    assert path.suffix == ".npz"
    loaded = load_router(path)
    assert type(loaded) is type(router) and loaded.models == router.models
    if isinstance(router, MfRouter):
        assert isinstance(loaded, MfRouter) and loaded.rank == 4
    assert loaded.prices == router.prices and loaded.tasks == ["math", "poems"]
    np.testing.assert_allclose(
        loaded.predict(x[:5], table.tasks[:5]), router.predict(x[:5], table.tasks[:5]), atol=2e-3
    )
    with np.load(path, allow_pickle=False) as data:  # no object arrays: nothing to unpickle
        assert all(data[name].dtype != object for name in data.files)


def test_bad_router_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_router(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InvalidRequestError, match="not a polyfuse router"):
        load_router(junk)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"format": "polyfuse-router"}], dtype=object))
    with pytest.raises(InvalidRequestError, match="not a polyfuse router"):
        load_router(pickled)
    with pytest.raises(InvalidRequestError, match="not trained"):
        KnnRouter().predict(np.zeros((1, 4), dtype=np.float32))


def test_wordllama_embeds_offline_and_the_cache_serves_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from polyfuse.routing.embedders import load_wordllama

    load_wordllama.cache_clear()
    embedder = WordLlamaEmbedder()
    vectors = embedder.embed(["solve 2 + 2", "write a sonnet"])
    assert vectors.shape == (2, 256) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = asyncio.run(embed_texts(embedder, ["a b", "c d"], cache=cache))

    class Refusing:
        id = embedder.id

        async def aembed(self, texts: list[str]) -> np.ndarray:
            raise AssertionError(f"cache miss for {texts}")

    again = asyncio.run(embed_texts(Refusing(), ["c d", "a b"], cache=cache))
    np.testing.assert_allclose(again, first[::-1])


def test_logs_without_tasks_or_prices_still_route_and_evaluate(
    trained: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder],
) -> None:
    from polyfuse.routing import evaluate_router

    table, x, embedder = trained
    untasked = RoutingTable(
        table.queries, [None] * len(table), table.models, table.scores, table.costs
    )
    for router in (KnnRouter(k=10), MlpRouter(epochs=30)):
        router.fit(untasked, x, embedder_id=embedder.id)
        assert router.tasks == [] and router.infer_tasks(x[:1]) == [None]
        decision = CostAwareSelector(router, embedder=embedder).route(
            query("math", random.Random(7))
        )
        assert decision.models == ["model-a"] and decision.cost_usd["model-a"] is None
        with pytest.raises(InvalidRequestError, match="need prices"):
            CostAwareSelector(router, "balance")
        (report,) = evaluate_router(router, untasked, untasked, x)
        assert report.scenario.name == "performance-first"
