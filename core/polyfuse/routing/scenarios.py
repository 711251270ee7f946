"""FusionFactory's routing scenarios: score = α·performance − β·cost, normalised per task.

Performance and cost are min-max normalised within each task (over every query × model of
that task), then combined; the label of a query is the model with the highest score.

====================  =====  =====
scenario                α      β
====================  =====  =====
performance-first      1.0    0.0
balance                0.5    0.5
cost-first             0.2    0.8
====================  =====  =====
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidRequestError
from .table import FloatMatrix, RoutingTable

__all__ = [
    "SCENARIOS",
    "Range",
    "Scenario",
    "TaskRanges",
    "get_scenario",
    "scenario_labels",
    "scenario_scores",
    "task_ranges",
]


@dataclass(frozen=True)
class Scenario:
    """A trade-off between performance (``alpha``) and cost (``beta``)."""

    name: str
    alpha: float
    beta: float

    def combine(self, performance: FloatMatrix, cost: FloatMatrix) -> FloatMatrix:
        """α·performance − β·cost (both already normalised); a cost of NaN counts as 0 when
        β is 0 and is an error otherwise."""
        if self.beta == 0:
            return self.alpha * performance
        return self.alpha * performance - self.beta * cost


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("performance-first", 1.0, 0.0),
        Scenario("balance", 0.5, 0.5),
        Scenario("cost-first", 0.2, 0.8),
    )
}
"""FusionFactory's three scenarios, by name."""


def get_scenario(scenario: str | Scenario) -> Scenario:
    """A scenario by name (or the scenario itself)."""
    if isinstance(scenario, Scenario):
        return scenario
    found = SCENARIOS.get(scenario)
    if found is None:
        raise InvalidRequestError(
            f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}"
        )
    return found


@dataclass(frozen=True)
class Range:
    """The min and max of a quantity; :meth:`scale` maps it to [0, 1]."""

    low: float
    high: float

    def scale(self, values: FloatMatrix) -> FloatMatrix:
        """(values − low) / (high − low); 0 where the range is empty."""
        span = self.high - self.low
        if not np.isfinite(span) or span <= 0:
            return np.zeros_like(values)
        return (values - self.low) / span


@dataclass(frozen=True)
class TaskRanges:
    """Per-task (and overall) ranges of score and cost, for normalisation."""

    score: dict[str | None, Range]
    cost: dict[str | None, Range]

    def for_task(self, task: str | None) -> tuple[Range, Range]:
        """The task's ranges; the overall ones (key None) for an unknown task."""
        key = task if task in self.score else None
        return self.score[key], self.cost[key]


def _range(values: FloatMatrix) -> Range:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Range(float("nan"), float("nan"))
    return Range(float(finite.min()), float(finite.max()))


def task_ranges(table: RoutingTable) -> TaskRanges:
    """Score and cost ranges within each task, and over the whole log (key None)."""
    score: dict[str | None, Range] = {None: _range(table.scores)}
    cost: dict[str | None, Range] = {None: _range(table.costs)}
    for task in table.task_names:
        rows = table.task_rows(task)
        score[task] = _range(table.scores[rows])
        cost[task] = _range(table.costs[rows])
    return TaskRanges(score, cost)


def scenario_scores(table: RoutingTable, scenario: str | Scenario) -> FloatMatrix:
    """Each (query, model)'s scenario score, normalised within the query's task (NaN where
    the model has no record)."""
    chosen = get_scenario(scenario)
    if chosen.beta > 0:
        missing = [
            m
            for j, m in enumerate(table.models)
            if np.any(np.isfinite(table.scores[:, j]) & ~np.isfinite(table.costs[:, j]))
        ]
        if missing:
            raise InvalidRequestError(
                f"scenario {chosen.name!r} weighs cost, but records of {', '.join(missing)} have "
                "no cost_usd; add prices or use performance-first"
            )
    ranges = task_ranges(table)
    out = np.full(table.scores.shape, np.nan)
    for task in {*table.tasks}:
        rows = table.task_rows(task)
        score_range, cost_range = ranges.for_task(task)
        perf = score_range.scale(table.scores[rows])
        cost = cost_range.scale(table.costs[rows])
        out[rows] = chosen.combine(perf, cost)
    return out


def scenario_labels(table: RoutingTable, scenario: str | Scenario) -> list[str | None]:
    """The best model of each query under ``scenario`` (ties: the earlier model in
    ``table.models``; None when no model answered the query)."""
    scores = scenario_scores(table, scenario)
    labels: list[str | None] = []
    for row in scores:
        if not np.any(np.isfinite(row)):
            labels.append(None)
            continue
        labels.append(table.models[int(np.nanargmax(row))])
    return labels
