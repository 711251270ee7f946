"""Validation-split calibration, cheapest-within-ε selection, and what eval reports of them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from routing_helpers import PRICES, planted_records, query

from polyfuse.errors import InvalidRequestError
from polyfuse.routing import (
    CostAwareSelector,
    KnnRouter,
    RoutingRecord,
    RoutingTable,
    WordLlamaEmbedder,
    evaluate_router,
    load_router,
)
from polyfuse.routing.calibrate import TOLERANCE_GRID, calibrate_router, split_validation
from polyfuse.routing.loaders import ModelPrice
from polyfuse.routing.selector import cheapest_within

PRICE_MAP = {m: ModelPrice(*p) for m, p in PRICES.items()}


def test_cheapest_within_takes_the_cheapest_near_the_best() -> None:
    scores = np.array([[0.9, 0.85, 0.5], [0.9, 0.7, 0.89], [0.2, 0.2, 0.2]])
    costs = np.array([[3.0, 1.0, 0.1], [3.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    # row 0: b is within 0.1 (c is not); row 1: b and c cost the same, c scores higher;
    # row 2: all tie on score, b and c on cost: the first of them.
    assert cheapest_within(scores, costs, 0.1).tolist() == [1, 2, 1]
    assert cheapest_within(scores, costs, 0.0).tolist() == [0, 0, 1]


def _near_miss_records(seed: int = 0) -> list[RoutingRecord]:
    """model-a (expensive) is always right; model-c (cheap) is right on every poem and on
    80% of math: the cheap model is worth taking on poems, and costs quality on math."""
    rng = random.Random(seed)
    records: list[RoutingRecord] = []
    for task in ("math", "poems"):
        for i in range(60):
            text = query(task, rng)
            for model, score in (
                ("model-a", 1.0),
                ("model-c", 1.0 if task == "poems" or i % 5 else 0.0),
            ):
                price = PRICES[model][0]
                records.append(
                    RoutingRecord(
                        query_id=f"{task}-{i}",
                        query=text,
                        task=task,
                        model=model,
                        score=score,
                        cost_usd=200 * price / 1e6,
                    )
                )
    return records


@pytest.fixture(scope="module")
def near_miss() -> tuple[RoutingTable, np.ndarray, WordLlamaEmbedder]:
    table = RoutingTable.from_records(_near_miss_records())
    embedder = WordLlamaEmbedder()
    return table, embedder.embed(table.queries), embedder


def test_the_validation_split_is_per_task_and_disjoint(
    near_miss: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder],
) -> None:
    table = near_miss[0]
    fit, validation = split_validation(table, 0.2, seed=3)
    assert sorted([*fit, *validation]) == list(range(len(table)))
    assert [sum(table.tasks[i] == t for i in validation) for t in ("math", "poems")] == [12, 12]
    again = split_validation(table, 0.2, seed=3)[1]
    assert again.tolist() == validation.tolist()  # seeded
    with pytest.raises(InvalidRequestError, match="validation share must be in"):
        split_validation(table, 1.0)


def test_calibration_stops_before_the_tolerance_that_costs_quality(
    near_miss: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder], tmp_path: Path
) -> None:
    table, x, embedder = near_miss
    calibration = calibrate_router(
        lambda: KnnRouter(k=10),
        table,
        x,
        embedder_id=embedder.id,
        prices=PRICE_MAP,
        output_tokens=100,
        share=0.25,
    )
    validation = calibration.validation
    assert validation["best_single"]["model"] == "model-a"
    assert validation["best_single"]["score"] == 1.0
    curve = {point["tolerance"]: point for point in validation["tolerance_curve"]}
    assert set(curve) == set(TOLERANCE_GRID)
    # ε = 0.3 takes the cheap model on math too, where it is wrong a fifth of the time.
    assert curve[0.3]["score"] < 1.0
    assert calibration.tolerance is not None and calibration.tolerance < 0.3
    assert curve[calibration.tolerance]["score"] == 1.0
    assert curve[calibration.tolerance]["cost_share"] < 1.0  # the poems went to model-c
    assert set(calibration.params) == {"prior_weight", "temperature"}
    assert len(validation["grid"]) == 9

    router = KnnRouter(k=10, **calibration.params).fit(
        table, x, embedder_id=embedder.id, prices=PRICE_MAP, output_tokens=100
    )
    router.calibration = calibration.as_header()
    loaded = load_router(router.save(tmp_path / "calibrated.npz"))
    assert loaded.tolerance == calibration.tolerance
    assert loaded.calibration["params"] == calibration.params

    selector = CostAwareSelector(loaded, tolerance="calibrated", embedder=embedder)
    rng = random.Random(42)
    assert selector.route(query("poems", rng), "poems").models == ["model-c"]
    math = selector.route(query("math", rng), "math")
    assert math.models == ["model-a"] and math.tolerance == calibration.tolerance
    loose = CostAwareSelector(loaded, tolerance=0.5, embedder=embedder)
    assert loose.route(query("math", rng), "math").ranking[0] == "model-c"

    (perf, *_) = evaluate_router(loaded, table, table, x)
    cheap = perf.methods[f"router cheapest within ε={calibration.tolerance:g}"]
    assert cheap.cost_usd < perf.methods["router"].cost_usd
    assert cheap.vs_best_single is not None
    diff, low, high = cheap.vs_best_single
    assert low <= diff <= high


def test_bad_tolerances_are_refused(
    near_miss: tuple[RoutingTable, np.ndarray, WordLlamaEmbedder],
) -> None:
    table, x, embedder = near_miss
    router = KnnRouter(k=10).fit(table, x, embedder_id=embedder.id)
    with pytest.raises(InvalidRequestError, match="tolerance must be a number >= 0"):
        CostAwareSelector(router, tolerance=-0.1)
    with pytest.raises(InvalidRequestError, match="tolerances need prices"):
        CostAwareSelector(router, tolerance=0.1)
    assert router.tolerance is None  # not calibrated: "calibrated" means none
    assert CostAwareSelector(router, tolerance="calibrated").tolerance is None
    with pytest.raises(InvalidRequestError, match="too small to carve"):
        calibrate_router(
            KnnRouter,
            RoutingTable.from_records(planted_records(1)),
            x[:2],
            embedder_id=embedder.id,
        )
