"""A routing log as matrices: one row per query, one column per model.

Routers train on :class:`RoutingTable` (scores and costs, NaN where a model did not answer a
query); building one checks the log is usable and says what is wrong when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequestError
from .records import RoutingRecord

__all__ = ["FloatMatrix", "RoutingTable"]

FloatMatrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RoutingTable:
    """Queries × models: ``scores`` and ``costs`` (NaN = no record).

    ``tasks[i]`` is query ``i``'s task (``None`` when the log does not say).
    """

    queries: list[str]
    tasks: list[str | None]
    models: list[str]
    scores: FloatMatrix
    costs: FloatMatrix

    @classmethod
    def from_records(
        cls, records: Iterable[RoutingRecord], *, models: Sequence[str] | None = None
    ) -> RoutingTable:
        """Pivot records into a table (a query is its ``query_id``, else its text).

        Raises :class:`InvalidRequestError` for an empty log, a log of one model, an empty
        task name, or a ``models`` list naming a model the log lacks.
        """
        rows: dict[str, int] = {}
        queries: list[str] = []
        tasks: list[str | None] = []
        cells: list[tuple[int, str, float, float]] = []
        for record in records:
            if record.task is not None and not record.task.strip():
                raise InvalidRequestError(
                    f"a record of model {record.model!r} has an empty task name "
                    f"(query {record.query[:60]!r}); give it a task or leave task out"
                )
            key = record.query_id or record.query
            row = rows.get(key)
            if row is None:
                row = rows[key] = len(queries)
                queries.append(record.query)
                tasks.append(record.task)
            cost = record.cost_usd if record.cost_usd is not None else float("nan")
            cells.append((row, record.model, record.score, cost))
        if not cells:
            raise InvalidRequestError(
                "the routing log is empty: routers need records to learn from"
            )
        seen = sorted({model for _, model, _, _ in cells})
        if models is not None:
            unknown = sorted(set(models) - set(seen))
            if unknown:
                raise InvalidRequestError(
                    f"the routing log has no records for {', '.join(unknown)}; "
                    f"it has {', '.join(seen)}"
                )
            chosen = list(models)
        else:
            chosen = seen
        if len(chosen) < 2:
            raise InvalidRequestError(
                f"the routing log has records of one model only ({chosen[0]}): routing chooses "
                "between models, so log at least two"
            )
        column = {m: j for j, m in enumerate(chosen)}
        scores = np.full((len(queries), len(chosen)), np.nan)
        costs = np.full((len(queries), len(chosen)), np.nan)
        for row, model, score, cost in cells:
            j = column.get(model)
            if j is not None:
                scores[row, j] = score
                costs[row, j] = cost
        return cls(queries=queries, tasks=tasks, models=chosen, scores=scores, costs=costs)

    @property
    def task_names(self) -> list[str]:
        """The distinct tasks, sorted (queries without a task are left out)."""
        return sorted({t for t in self.tasks if t is not None})

    def task_rows(self, task: str | None) -> npt.NDArray[np.bool_]:
        """A mask of the queries of ``task``."""
        return np.array([t == task for t in self.tasks], dtype=bool)

    def __len__(self) -> int:
        return len(self.queries)
