"""Distillation admission over a routed pool counts the k routed members' calls, not all."""

from __future__ import annotations

import pytest
from routing_helpers import PRICES, planted_records

from polyfuse import OpenAIEndpoint, Pool
from polyfuse.aggregators import BestOfN, LLMJudge
from polyfuse.distill.panel import Panel
from polyfuse.policy import QuorumPolicy
from polyfuse.presets import PresetsConfig
from polyfuse.registry import PresetRegistry
from polyfuse.routing import CostAwareSelector, KnnRouter, RoutedPool, RoutingTable
from polyfuse.routing.loaders import ModelPrice


@pytest.fixture(scope="module")
def router() -> KnnRouter:
    import numpy as np

    table = RoutingTable.from_records(planted_records(5))
    prices = {m: ModelPrice(*p) for m, p in PRICES.items()}
    # Embeddings do not matter for admission: any rows will do.
    x = np.eye(len(table), 8, dtype=np.float32)
    knn = KnnRouter(k=3)
    knn.fit(table, x, embedder_id="test", prices=prices)
    return knn


def _panel(pool: Pool) -> Panel:
    judge = OpenAIEndpoint("http://127.0.0.1:9/v1", "judge", api_key=None, max_concurrency=6)
    return Panel(
        pool=pool,
        aggregators={"best_of_n": BestOfN(judge)},
        policy=QuorumPolicy(),
        judge=LLMJudge(judge),
        registry=PresetRegistry(PresetsConfig()),
    )


def _endpoints() -> dict[str, OpenAIEndpoint]:
    return {
        m: OpenAIEndpoint("http://127.0.0.1:9/v1", m, api_key=None, max_concurrency=4)
        for m in PRICES
    }


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_routed_pool_admits_rows_for_the_members_it_really_asks(
    router: KnnRouter, k: int
) -> None:
    plain = _panel(Pool.panel(list(_endpoints().values()))).admission()
    assert plain.sampling_slots == 4  # every row asks every endpoint: 4 rows fill each
    routed_pool = RoutedPool(_endpoints(), CostAwareSelector(router, k=k))
    assert routed_pool.members_per_request == k
    routed = _panel(routed_pool).admission()
    # Each endpoint is asked by k/3 of the rows: 3/k times as many rows fill its 4 slots.
    assert routed.sampling_slots == {1: 12, 2: 6, 3: 4}[k]
    # best-of-n judges k candidates per row, not 3: the judge's 6 slots take 6/k rows.
    assert routed.max_in_flight == 2 * routed.sampling_slots + {1: 6, 2: 3, 3: 2}[k]
    assert plain.max_in_flight == 2 * 4 + 2
