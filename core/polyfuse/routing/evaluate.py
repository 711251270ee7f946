"""Held-out evaluation of routers: performance and cost per scenario, against baselines.

For each scenario the router picks one model per held-out query (its top-1); the table
reports the mean logged score of the picks, their mean cost and mean scenario reward, next to

* **best single**: the one model with the best mean reward on the *training* log,
* **random**: a uniformly random model (the expectation, not a draw),
* **oracle**: the model with the best actual reward for each query.

In performance-first two cost-saving variants of the router may be added: ``router within
budget`` (only models costing at most a share of the best single model's cost, per query) and
``router cheapest within ε`` (the cheapest model predicted within ε of the best; ε is the
router's validated :attr:`~polyfuse.routing.Router.tolerance` unless given).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidRequestError
from .embedders import Embedder, Matrix
from .routers import Router, load_router
from .scenarios import SCENARIOS, Scenario, get_scenario, scenario_scores
from .selector import CostAwareSelector, cheapest_within
from .table import FloatMatrix, RoutingTable
from .tokens import count_tokens

__all__ = ["MethodResult", "RouterSpeed", "ScenarioReport", "evaluate_router", "measure_speed"]


@dataclass
class MethodResult:
    """One method's mean score, cost ($/query) and reward, overall and per task."""

    name: str
    score: float
    cost_usd: float
    reward: float
    per_task: dict[str, float] = field(default_factory=dict)
    picks: dict[str, int] = field(default_factory=dict)
    query_scores: list[float] = field(default_factory=list[float], repr=False)
    """The logged score of the method's pick for each held-out query (NaN = no record)."""
    vs_best_single: tuple[float, float, float] | None = None
    """Mean score minus the performance-first best single model's (the model with the best
    mean training score, the one every cost share compares with), with its paired bootstrap
    95% CI (low, high) over the held-out queries."""


@dataclass
class ScenarioReport:
    """Every method's result under one scenario."""

    scenario: Scenario
    methods: dict[str, MethodResult]
    best_single_model: str


def _summary(
    name: str,
    chosen: np.ndarray,
    test: RoutingTable,
    rewards: FloatMatrix,
    models: list[str],
) -> MethodResult:
    rows = np.arange(len(test))
    score = test.scores[rows, chosen]
    cost = test.costs[rows, chosen]
    per_task = {task: float(np.nanmean(score[test.task_rows(task)])) for task in test.task_names}
    picks: dict[str, int] = {}
    for j in chosen:
        picks[models[int(j)]] = picks.get(models[int(j)], 0) + 1
    return MethodResult(
        name,
        float(np.nanmean(score)),
        float(np.nanmean(cost)),
        float(np.nanmean(rewards[rows, chosen])),
        per_task,
        picks,
        [float(v) for v in score],
    )


def _compare_with_best_single(
    methods: dict[str, MethodResult], base: list[float], *, skip: str | None
) -> None:
    """Fill ``vs_best_single`` of every method with per-query scores but ``skip`` (the
    reference itself), against ``base`` (paired bootstrap, :func:`polyfuse.eval.bootstrap`:
    the methods answer the same queries)."""
    from ..eval.stats import bootstrap

    for method in methods.values():
        if not method.query_scores or method.name == skip:
            continue
        _, (comparison,) = bootstrap(
            {
                "method": [None if np.isnan(v) else v for v in method.query_scores],
                "reference": [None if np.isnan(v) else v for v in base],
            }
        )
        diff = comparison.diff
        method.vs_best_single = (diff.mean, diff.low, diff.high)


def evaluate_router(
    router: Router,
    train: RoutingTable,
    test: RoutingTable,
    test_embeddings: Matrix,
    *,
    scenarios: list[str] | None = None,
    tasks_known: bool = True,
    budget_share: float | None = None,
    tolerance: float | None = None,
) -> list[ScenarioReport]:
    """Evaluate ``router`` on the held-out ``test`` log, one report per scenario.

    ``tasks_known``: give the router each test query's task (FusionFactory's setting: the task
    description is an input); otherwise it infers the task from the query.
    ``budget_share``: also report, in scenarios that ignore cost, the router restricted per query to the
    models whose estimated cost is at most this share of the performance-first best single
    model's estimated cost for that query (method ``router within budget``).
    ``tolerance``: ε of the ``router cheapest within ε`` method (default: the router's
    calibrated tolerance; the method is left out when neither exists).
    """
    if budget_share is not None and budget_share <= 0:
        raise InvalidRequestError(f"budget_share must be > 0 (got {budget_share})")
    if tolerance is not None and not tolerance >= 0:
        raise InvalidRequestError(f"tolerance must be >= 0 (got {tolerance})")
    epsilon = tolerance if tolerance is not None else router.tolerance
    if list(test.models) != list(router.models):
        test = _align(test, router.models)
    train = _align(train, router.models)
    priced = all(m in router.prices for m in router.models)
    # Without prices only performance-first can be evaluated; say so in the result instead.
    names = scenarios or (list(SCENARIOS) if priced else ["performance-first"])
    tasks = test.tasks if tasks_known else [None] * len(test)
    performance, used_tasks = router.predict_with_tasks(test_embeddings, tasks)
    tokens = count_tokens(test.queries)
    costs = np.stack([router.estimated_costs(t) for t in tokens])
    perf_best = int(np.argmax(np.nanmean(train.scores, axis=0)))
    reports: list[ScenarioReport] = []
    for name in names:
        scenario = get_scenario(name)
        selector = CostAwareSelector(router, scenario)
        predicted = selector.scenario_scores(performance, costs, used_tasks)
        rewards = scenario_scores(test, scenario)
        train_rewards = scenario_scores(train, scenario)
        best = int(np.nanargmax(np.nanmean(train_rewards, axis=0)))
        filled = np.where(np.isfinite(rewards), rewards, -np.inf)
        methods = {
            "router": _summary(
                "router", np.argmax(predicted, axis=1), test, rewards, router.models
            ),
            "best single": _summary(
                "best single", np.full(len(test), best), test, rewards, router.models
            ),
            "oracle": _summary("oracle", np.argmax(filled, axis=1), test, rewards, router.models),
        }
        if budget_share is not None and scenario.beta == 0:
            allowed = costs <= budget_share * costs[:, perf_best : perf_best + 1] + 1e-15
            capped = np.where(allowed, predicted, -np.inf)
            methods["router within budget"] = _summary(
                "router within budget", np.argmax(capped, axis=1), test, rewards, router.models
            )
        if epsilon is not None and priced and scenario.beta == 0:
            name_eps = f"router cheapest within ε={epsilon:g}"
            methods[name_eps] = _summary(
                name_eps, cheapest_within(predicted, costs, epsilon), test, rewards, router.models
            )
        methods["random"] = MethodResult(
            "random",
            float(np.nanmean(np.nanmean(test.scores, axis=1))),
            float(np.nanmean(np.nanmean(test.costs, axis=1))),
            float(np.nanmean(np.nanmean(rewards, axis=1))),
            {
                task: float(np.nanmean(test.scores[test.task_rows(task)]))
                for task in test.task_names
            },
        )
        _compare_with_best_single(
            methods,
            [float(v) for v in test.scores[:, perf_best]],
            skip="best single" if best == perf_best else None,
        )
        reports.append(ScenarioReport(scenario, methods, router.models[best]))
    return reports


@dataclass
class RouterSpeed:
    """How long a router took to train (from its file), to load and to route one query."""

    trained_queries: int
    fit_seconds: float
    calibration_seconds: float | None
    load_ms: float
    route_median_ms: float
    route_p95_ms: float
    queries: int


def measure_speed(
    path: str | Path,
    queries: Sequence[str],
    tasks: Sequence[str | None],
    *,
    embedder: Embedder | None = None,
    limit: int = 200,
) -> RouterSpeed:
    """Load the router file at ``path`` and time :meth:`CostAwareSelector.route` (embedding
    included) on up to ``limit`` queries, after one warm-up call."""
    if not queries:
        raise InvalidRequestError("no queries to time routing on")
    started = time.perf_counter()
    router = load_router(path)
    load_ms = (time.perf_counter() - started) * 1000
    priced = all(m in router.prices for m in router.models)
    selector = CostAwareSelector(
        router,
        "performance-first",
        tolerance=router.tolerance if priced else None,
        embedder=embedder,
    )
    selector.route(queries[0], tasks[0])
    latencies = [
        selector.route(query, task).latency_ms
        for query, task in zip(queries[:limit], tasks[:limit], strict=True)
    ]
    calibration = router.calibration.get("seconds")
    return RouterSpeed(
        trained_queries=int(router.trained.get("queries", 0)),
        fit_seconds=float(router.trained.get("seconds", float("nan"))),
        calibration_seconds=float(calibration) if calibration is not None else None,
        load_ms=load_ms,
        route_median_ms=float(np.median(latencies)),
        route_p95_ms=float(np.percentile(latencies, 95)),
        queries=len(latencies),
    )


def _align(table: RoutingTable, models: list[str]) -> RoutingTable:
    missing = [m for m in models if m not in table.models]
    if missing:
        raise InvalidRequestError(
            f"the log has no records of {', '.join(missing)}, which the router routes to"
        )
    index = [table.models.index(m) for m in models]
    return RoutingTable(
        queries=table.queries,
        tasks=table.tasks,
        models=list(models),
        scores=table.scores[:, index],
        costs=table.costs[:, index],
    )
