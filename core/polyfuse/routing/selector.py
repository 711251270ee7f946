"""The cost-aware selector: rank models for a query by α·performance − β·cost, take the top k.

The router predicts each model's score; the selector estimates each model's cost for this
query (its prompt's tokens at the model's input price plus the router's stated output length
at its output price), normalises both with the task's ranges from the training log
(FusionFactory's per-task min-max), combines them by the scenario and keeps the best ``k``
models whose summed estimated cost fits ``budget_usd``.

With a ``tolerance`` ε the selector prefers cheapness among near-equals: every model whose
scenario score is within ε of the best one is ranked first, cheapest first; the others follow
by score. ``polyfuse route train`` chooses ε on a validation split carved from the training
log (the largest ε that still matches the best single model's validation score) and stores it
in the router file (:attr:`Router.tolerance`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequestError
from .embedders import Embedder, Matrix, WordLlamaEmbedder
from .routers import Router
from .scenarios import Scenario, get_scenario
from .table import FloatMatrix
from .tokens import count_tokens

IntVector = npt.NDArray[np.intp]

__all__ = ["CostAwareSelector", "RouteDecision", "cheapest_within", "embedder_for"]


@dataclass
class RouteDecision:
    """The models chosen for one query, and why.

    ``ranking`` lists every model, best first; ``models`` the chosen ones (at most ``k``,
    within the budget). ``scores`` are scenario scores, ``performance`` predicted scores and
    ``cost_usd`` estimated costs, by model.
    """

    models: list[str]
    ranking: list[str]
    scenario: str
    task: str | None
    scores: dict[str, float]
    performance: dict[str, float]
    cost_usd: dict[str, float | None]
    budget_usd: float | None = None
    tolerance: float | None = None
    over_budget: bool = False
    latency_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, object]:
        """A JSON-ready summary for a fusion result's metadata."""
        return {
            "models": self.models,
            "ranking": self.ranking,
            "scenario": self.scenario,
            "task": self.task,
            "scores": {m: round(s, 6) for m, s in self.scores.items()},
            "performance": {m: round(s, 6) for m, s in self.performance.items()},
            "cost_usd": self.cost_usd,
            "budget_usd": self.budget_usd,
            "tolerance": self.tolerance,
            "over_budget": self.over_budget,
            "latency_ms": round(self.latency_ms, 3),
            "notes": self.notes,
        }


def embedder_for(router: Router, embedder: Embedder | None = None) -> Embedder:
    """The embedder a router was trained with: ``embedder`` if given (its id must match),
    else the default wordllama one when the router used it."""
    if embedder is not None:
        if embedder.id != router.embedder_id:
            raise InvalidRequestError(
                f"the router was trained on {router.embedder_id} embeddings, not {embedder.id}; "
                "pass the same embedder"
            )
        return embedder
    if router.embedder_id.startswith("wordllama:"):
        _, config, dim = router.embedder_id.split(":")
        return WordLlamaEmbedder(config, int(dim))
    raise InvalidRequestError(
        f"the router was trained on {router.embedder_id} embeddings; pass that embedder"
    )


def cheapest_within(scores: FloatMatrix, costs: FloatMatrix, tolerance: float) -> IntVector:
    """Per row, the cheapest model whose score is within ``tolerance`` of the row's best
    (ties: the higher score). Rows are queries, columns models."""
    best = scores.max(axis=1, keepdims=True)
    near = scores >= best - tolerance
    # Lexicographic (cost, -score) among the near models: cost first, score breaks ties.
    key = np.where(near, costs, np.inf)
    cheapest = key.min(axis=1, keepdims=True)
    tied = near & (key <= cheapest)
    return np.argmax(np.where(tied, scores, -np.inf), axis=1)


class CostAwareSelector:
    """Ranks a router's models for a query under a scenario; keeps the top ``k``.

    Args:
        router: a trained router.
        scenario: ``performance-first``, ``balance``, ``cost-first`` or a :class:`Scenario`.
        k: how many models to choose.
        budget_usd: the most the chosen models may cost together per query (estimated);
            when even the cheapest ranked model is over it, that one is chosen alone and the
            decision says ``over_budget``.
        tolerance: ε in scenario-score units (performance-first: predicted score): models
            within ε of the best are ranked first, cheapest first. ``"calibrated"`` takes the
            router's validated :attr:`~polyfuse.routing.Router.tolerance` (none when the
            router has none); ``None`` (default) ranks by score alone.
        embedder: the router's embedder (default: rebuilt from the router's file when it is
            wordllama).
    """

    def __init__(
        self,
        router: Router,
        scenario: str | Scenario = "performance-first",
        *,
        k: int = 1,
        budget_usd: float | None = None,
        tolerance: float | Literal["calibrated"] | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequestError(f"k must be an integer >= 1 (got {k!r})")
        if budget_usd is not None and budget_usd <= 0:
            raise InvalidRequestError(f"budget_usd must be > 0 (got {budget_usd})")
        if tolerance == "calibrated":
            tolerance = router.tolerance
        elif tolerance is not None and (isinstance(tolerance, str) or not tolerance >= 0):
            raise InvalidRequestError(
                f"tolerance must be a number >= 0 or 'calibrated' (got {tolerance!r})"
            )
        self.router = router
        self.scenario = get_scenario(scenario)
        self.k = k
        self.budget_usd = budget_usd
        self.tolerance: float | None = tolerance
        self._embedder = embedder
        if self.scenario.beta > 0 or budget_usd is not None or tolerance is not None:
            missing = [m for m in router.models if m not in router.prices]
            if missing:
                raise InvalidRequestError(
                    f"scenario {self.scenario.name!r}, budgets and tolerances need prices; the router "
                    f"has none for {', '.join(missing)}; train it with --prices"
                )

    @property
    def embedder(self) -> Embedder:
        """The router's embedder."""
        if self._embedder is None:
            self._embedder = embedder_for(self.router)
        return self._embedder

    def scenario_scores(
        self, performance: FloatMatrix, costs: FloatMatrix, tasks: Sequence[str | None]
    ) -> FloatMatrix:
        """α·perf_norm − β·cost_norm per (query, model), with the tasks' training ranges."""
        ranges = self.router.ranges
        assert ranges is not None
        out = np.empty_like(performance)
        for i, task in enumerate(tasks):
            score_range, cost_range = ranges.for_task(task)
            perf = score_range.scale(performance[i])
            cost = cost_range.scale(costs[i]) if self.scenario.beta > 0 else np.zeros_like(perf)
            out[i] = self.scenario.combine(perf, cost)
        return out

    def order(self, scores: FloatMatrix, costs: FloatMatrix) -> list[int]:
        """Model indices, best first: by scenario score, or with a tolerance ε the models
        within ε of the best score first (cheapest first), then the rest by score."""
        by_score = [int(j) for j in np.argsort(-scores, kind="stable")]
        if self.tolerance is None:
            return by_score
        near = [j for j in by_score if scores[j] >= scores[by_score[0]] - self.tolerance]
        near.sort(key=lambda j: (float(costs[j]), -float(scores[j])))
        return near + [j for j in by_score if j not in near]

    def decide(
        self,
        embedding: Matrix,
        prompt_tokens: int,
        task: str | None = None,
    ) -> RouteDecision:
        """Choose models for one query from its embedding and prompt length."""
        started = time.perf_counter()
        router = self.router
        notes: list[str] = []
        used_task = task
        if task is not None and task not in router.tasks:
            notes.append(f"task {task!r} is not in the router's log; inferred from the query")
            used_task = None
        performance, tasks = router.predict_with_tasks(embedding, [used_task])
        used_task = tasks[0]
        costs = router.estimated_costs(prompt_tokens)[None, :]
        scores = self.scenario_scores(performance, costs, [used_task])[0]
        order = self.order(scores, costs[0])
        ranking = [router.models[j] for j in order]
        chosen: list[str] = []
        spent = 0.0
        over = False
        for j in order:
            if len(chosen) == self.k:
                break
            cost = float(costs[0, j])
            if self.budget_usd is not None and spent + cost > self.budget_usd:
                continue
            chosen.append(router.models[j])
            spent += cost if np.isfinite(cost) else 0.0
        if not chosen:
            cheapest = int(np.nanargmin(costs[0]))
            chosen = [router.models[cheapest]]
            over = True
            notes.append(
                f"no model fits the budget of ${self.budget_usd}; chose the cheapest "
                f"({chosen[0]}, ${costs[0, cheapest]:.6f})"
            )
        return RouteDecision(
            models=chosen,
            ranking=ranking,
            scenario=self.scenario.name,
            task=used_task,
            scores={m: float(scores[j]) for j, m in enumerate(router.models)},
            performance={m: float(performance[0, j]) for j, m in enumerate(router.models)},
            cost_usd={
                m: (float(costs[0, j]) if np.isfinite(costs[0, j]) else None)
                for j, m in enumerate(router.models)
            },
            budget_usd=self.budget_usd,
            tolerance=self.tolerance,
            over_budget=over,
            latency_ms=(time.perf_counter() - started) * 1000,
            notes=notes,
        )

    async def aroute(self, query: str, task: str | None = None) -> RouteDecision:
        """Embed ``query`` and choose its models."""
        if not query.strip():
            raise InvalidRequestError("the query is empty: nothing to route")
        started = time.perf_counter()
        embedding = await self.embedder.aembed([query])
        tokens = count_tokens([query])[0]
        decision = self.decide(embedding, tokens, task)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def route(self, query: str, task: str | None = None) -> RouteDecision:
        """Sync :meth:`aroute` (inline for the wordllama embedder: no event-loop hop, which
        cost 7-10 ms per call on a loaded machine against ~1 ms for the routing itself)."""
        embedder = self.embedder
        if not isinstance(embedder, WordLlamaEmbedder):
            from .._sync import run_sync

            return run_sync(self.aroute(query, task))
        if not query.strip():
            raise InvalidRequestError("the query is empty: nothing to route")
        started = time.perf_counter()
        decision = self.decide(embedder.embed([query]), count_tokens([query])[0], task)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision
