"""Choose a router's settings on a validation split carved from its training log.

Nothing here looks at held-out (test) logs: :func:`calibrate_router` splits the *training*
log into a fit part and a validation part (``share`` of each task's queries, seeded), trains
the router on the fit part and chooses on the validation part

1. the **prediction settings** — the task-prior weight of every router and the kNN
   temperature — from a small grid (:attr:`Router.prediction_grid`), by the mean scenario
   reward of the router's top-1 picks over the scenarios (all three when the log has costs,
   else performance-first);
2. the **tolerance ε** of the cheapest-within-ε selection
   (:func:`~polyfuse.routing.selector.cheapest_within`): the largest ε on a grid of 0 to 0.3 whose
   validation score still matches the best single model's (the model with the best mean score
   on the fit part). Users who want "the best single model's quality for less" get it from
   ``CostAwareSelector(router, tolerance="calibrated")``.

``polyfuse route train`` then trains the router on the whole log with these settings and stores
them (and the validation numbers) in the router file's ``calibration``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequestError
from .embedders import Matrix
from .loaders import DEFAULT_OUTPUT_TOKENS, ModelPrice
from .routers import Router
from .scenarios import SCENARIOS, scenario_scores
from .selector import CostAwareSelector, cheapest_within
from .table import FloatMatrix, RoutingTable
from .tokens import count_tokens

__all__ = ["TOLERANCE_GRID", "Calibration", "calibrate_router", "split_validation"]

TOLERANCE_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(31))
"""The tolerances ε tried: 0 to 0.3 in steps of 0.01 (task-normalised score units)."""

IndexArray = npt.NDArray[np.intp]


@dataclass
class Calibration:
    """What :func:`calibrate_router` chose, and the validation numbers behind it."""

    params: dict[str, float]
    tolerance: float | None
    validation: dict[str, Any] = field(default_factory=dict[str, Any])
    seconds: float = 0.0

    def as_header(self) -> dict[str, Any]:
        """The JSON stored in a router file's ``calibration``."""
        return {
            "params": self.params,
            "tolerance": self.tolerance,
            "validation": self.validation,
            "seconds": round(self.seconds, 3),
        }


def split_validation(
    table: RoutingTable, share: float, seed: int = 0
) -> tuple[IndexArray, IndexArray]:
    """(fit rows, validation rows): ``share`` of each task's queries (at least one, and never
    all of a task) go to validation, drawn with ``seed``."""
    if not 0.0 < share < 1.0:
        raise InvalidRequestError(f"the validation share must be in (0, 1) (got {share})")
    rng = np.random.default_rng(seed)
    held: list[int] = []
    # Sorted, not a set's order: string hashing differs between processes, and the split
    # must be the same on every run for a seed.
    for task in sorted({*table.tasks}, key=lambda t: (t is not None, t or "")):
        rows = np.flatnonzero(table.task_rows(task))
        if len(rows) < 2:
            continue
        count = min(max(1, round(share * len(rows))), len(rows) - 1)
        held.extend(int(i) for i in rng.choice(rows, size=count, replace=False))
    validation = np.array(sorted(held), dtype=np.intp)
    mask = np.ones(len(table), dtype=bool)
    mask[validation] = False
    if len(validation) == 0 or not mask.any():
        raise InvalidRequestError(
            f"the log ({len(table)} queries) is too small to carve a validation split from; "
            "train without one (--validation 0)"
        )
    return np.flatnonzero(mask).astype(np.intp), validation


def _rows(table: RoutingTable, rows: IndexArray) -> RoutingTable:
    return RoutingTable(
        queries=[table.queries[int(i)] for i in rows],
        tasks=[table.tasks[int(i)] for i in rows],
        models=list(table.models),
        scores=table.scores[rows],
        costs=table.costs[rows],
    )


def _mean_at(values: FloatMatrix, picks: npt.NDArray[np.intp]) -> float:
    return float(np.nanmean(values[np.arange(len(picks)), picks]))


def calibrate_router(
    make: Callable[[], Router],
    table: RoutingTable,
    embeddings: Matrix,
    *,
    embedder_id: str,
    prices: Mapping[str, ModelPrice] | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    share: float = 0.15,
    seed: int = 0,
) -> Calibration:
    """Train ``make()`` on the fit part of ``table`` and choose its settings on the
    validation part (see the module docstring)."""
    started = time.perf_counter()
    fit_rows, val_rows = split_validation(table, share, seed)
    fit_table, val_table = _rows(table, fit_rows), _rows(table, val_rows)
    router = make().fit(
        fit_table,
        embeddings[fit_rows],
        embedder_id=embedder_id,
        prices=prices,
        output_tokens=output_tokens,
    )
    x_val = embeddings[val_rows]
    priced = all(m in router.prices for m in router.models) and bool(
        np.isfinite(val_table.costs[np.isfinite(val_table.scores)]).all()
    )
    names = list(SCENARIOS) if priced else ["performance-first"]
    rewards = {name: scenario_scores(val_table, name) for name in names}
    tokens = count_tokens(val_table.queries)
    estimated = np.stack([router.estimated_costs(t) for t in tokens])

    grid = router.prediction_grid
    best_params: dict[str, float] = {}
    best_reward = -np.inf
    rewards_by_setting: list[dict[str, Any]] = []
    for setting in _settings(grid):
        for name, value in setting.items():
            setattr(router, name, value)
        performance, tasks = router.predict_with_tasks(x_val, val_table.tasks)
        mean_reward = float(
            np.mean(
                [
                    _mean_at(
                        rewards[name],
                        np.argmax(
                            CostAwareSelector(router, name).scenario_scores(
                                performance, estimated, tasks
                            ),
                            axis=1,
                        ),
                    )
                    for name in names
                ]
            )
        )
        rewards_by_setting.append({**setting, "reward": round(mean_reward, 5)})
        if mean_reward > best_reward + 1e-12:
            best_reward, best_params = mean_reward, dict(setting)
    for name, value in best_params.items():
        setattr(router, name, value)

    validation: dict[str, Any] = {
        "share": share,
        "seed": seed,
        "queries": len(val_rows),
        "fit_queries": len(fit_rows),
        "mean_reward": round(best_reward, 5),
        "scenarios": names,
        "grid": rewards_by_setting,
    }
    tolerance: float | None = None
    if priced:
        tolerance = _choose_tolerance(router, fit_table, val_table, x_val, estimated, validation)
    return Calibration(best_params, tolerance, validation, time.perf_counter() - started)


def _settings(grid: Mapping[str, tuple[float, ...]]) -> list[dict[str, float]]:
    settings: list[dict[str, float]] = [{}]
    for name, values in grid.items():
        settings = [{**s, name: v} for s in settings for v in values]
    return settings


def _choose_tolerance(
    router: Router,
    fit_table: RoutingTable,
    val_table: RoutingTable,
    x_val: Matrix,
    estimated: FloatMatrix,
    validation: dict[str, Any],
) -> float | None:
    """The largest ε whose validation score matches the best single model's; records the
    numbers in ``validation``."""
    performance, tasks = router.predict_with_tasks(x_val, val_table.tasks)
    scores = CostAwareSelector(router, "performance-first").scenario_scores(
        performance, estimated, tasks
    )
    best = int(np.nanargmax(np.nanmean(fit_table.scores, axis=0)))
    single_score = float(np.nanmean(val_table.scores[:, best]))
    single_cost = float(np.nanmean(val_table.costs[:, best]))
    chosen: float | None = None
    curve: list[dict[str, float | None]] = []
    for epsilon in TOLERANCE_GRID:
        picks = cheapest_within(scores, estimated, epsilon)
        score = _mean_at(val_table.scores, picks)
        cost = _mean_at(val_table.costs, picks)
        curve.append(
            {
                "tolerance": epsilon,
                "score": round(score, 4),
                "cost_share": round(cost / single_cost, 4) if single_cost > 0 else None,
            }
        )
        if score >= single_score:
            chosen = epsilon
    validation["best_single"] = {
        "model": router.models[best],
        "score": round(single_score, 4),
        "cost_usd": single_cost,
    }
    validation["tolerance_curve"] = curve
    return chosen
