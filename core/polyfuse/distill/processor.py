"""One prompt → one record: sample the teachers once, run every aggregation on those same
candidates, and build the training record with its provenance (or an error entry).

Both engines (asyncio and Ray) call :meth:`RowProcessor.process`, so they make the same records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from ..adaptive import saved_usage
from ..aggregators import Aggregate, AggregationContext, Aggregator
from ..aggregators._contrib import contributions
from ..errors import AggregationError, NoCandidatesError, PolyfuseError
from ..messages import ChatRequest, SamplingParams
from ..results import AggregationRecord, CallRecord, Candidate, ErrorInfo, SamplingRecord
from ..usage import UsageByRole
from .errors import DistillConfigError, RecordError
from .formats import Answers, build_record
from .inputs import PromptRow
from .outcome import RowOutcome, encode_line
from .panel import Panel
from .pricing import PriceTable
from .provenance import aggregation_entry, priced_calls, teacher_entry, usage_by_role, usage_dict
from .spec import DistillSpec, friendly_error

__all__ = ["RowProcessor"]


class _Spent:
    """The candidates and aggregation calls of one row so far (for usage and cost)."""

    __slots__ = ("calls", "candidates", "sampling", "shortcuts")

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.calls: list[CallRecord] = []
        self.sampling: SamplingRecord | None = None
        self.shortcuts = 0

    def usage(self) -> UsageByRole:
        """Usage by role, with the calls adaptive sampling and the consensus shortcut saved."""
        usage = usage_by_role(self.candidates, self.calls)
        usable = [c for c in self.candidates if c.ok]
        skipped = 0 if self.sampling is None else self.sampling.max_samples - len(self.candidates)
        saved = saved_usage(usable, skipped, aggregator_skipped=False)
        for _ in range(self.shortcuts):
            saved = saved + saved_usage(usable, 0, aggregator_skipped=True)
        return usage.model_copy(update={"saved": saved})


class RowProcessor:
    """Turns prompts into records for one spec, with one panel (one event loop).

    Args:
        spec: what to make.
        panel: the live teachers, aggregators and judge (``Panel.build(spec)``).
        prices: per-model prices for the records' cost.
        source: the prompts file's name, recorded in each record's provenance.
    """

    def __init__(
        self,
        spec: DistillSpec,
        panel: Panel,
        *,
        prices: PriceTable | None = None,
        source: str = "",
    ) -> None:
        self.spec = spec
        self.panel = panel
        self.prices = prices if prices is not None else PriceTable({})
        self.source = source
        self.fingerprint = spec.fingerprint()
        try:
            self.params = SamplingParams.model_validate(spec.sampling_params())
        except ValidationError as exc:
            raise DistillConfigError(
                f"invalid sampling parameters: {friendly_error(exc)}; put vendor-specific "
                "fields in extra_body"
            ) from None

    async def process(self, row: PromptRow, gate: asyncio.Semaphore | None = None) -> RowOutcome:
        """Make the record for ``row``; failures become an error outcome.

        ``gate`` (a sampling slot) is held only while the teachers answer, so rows waiting for
        the fusor or the judge never keep the teachers idle. Errors that are not
        :class:`~polyfuse.errors.PolyfuseError` (bugs) propagate.
        """
        started = time.perf_counter()
        spent = _Spent()
        stage = "sampling"
        try:
            request = ChatRequest.from_wire(row.messages, self.params)
            if gate is None:
                spent.candidates, spent.sampling = await self.panel.sample(request)
            else:
                async with gate:
                    spent.candidates, spent.sampling = await self.panel.sample(request)
            usable = self._usable(spent.candidates)
            stage = "aggregation"
            aggregates = await self._aggregate(request, usable, spent)
            stage = "scoring"
            primary_score = await self._primary_score(request, aggregates, spent)
            stage = "format"
            return self._record(row, usable, aggregates, primary_score, spent, started)
        except PolyfuseError as exc:
            return self._failure(row, stage, exc, spent, started)

    # ------------------------------------------------------------------ steps

    def _usable(self, candidates: list[Candidate]) -> list[Candidate]:
        usable = [c for c in candidates if c.ok]
        if not usable:
            raise NoCandidatesError(
                [(c.label, c.error.message if c.error else c.status) for c in candidates]
            )
        needed = self.panel.policy.min_candidates
        if len(usable) < needed:
            failed = "; ".join(
                f"{c.label}: {c.error.message if c.error else c.status}"
                for c in candidates
                if not c.ok
            )
            raise RecordError(
                f"only {len(usable)} of {len(candidates)} teachers answered and the preset "
                f"needs min_candidates={needed} ({failed})"
            )
        return usable

    async def _aggregate(
        self, request: ChatRequest, usable: list[Candidate], spent: _Spent
    ) -> dict[str, Aggregate]:
        methods = list(self.panel.aggregators)

        async def run(method: str, aggregator: Aggregator) -> Aggregate:
            # Best-of-N's judge scores are data here (scores, preference pairs): never skipped.
            shortcut = None if method == "best_of_n" else self.panel.shortcut(method, usable)
            if shortcut is not None:
                spent.shortcuts += 1
                return shortcut
            return await aggregator.aggregate(
                AggregationContext(
                    request=request,
                    candidates=list(usable),
                    pool=self.panel.pool,
                    policy=self.panel.policy,
                )
            )

        results = await asyncio.gather(
            *(run(method, aggregator) for method, aggregator in self.panel.aggregators.items()),
            return_exceptions=True,
        )
        aggregates: dict[str, Aggregate] = {}
        failure: tuple[str, PolyfuseError] | None = None
        for method, result in zip(methods, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, PolyfuseError):
                    raise result
                partial = result.record if isinstance(result, AggregationError) else None
                if isinstance(partial, AggregationRecord):
                    spent.calls.extend(partial.calls)
                failure = failure or (method, result)
                continue
            spent.calls.extend(result.record.calls)
            record = result.record
            if (
                self.panel.aggregators[method].synthesizes
                and record.selected is None
                and record.contributions is None
                and result.message.content
            ):
                record.contributions = contributions(result.message.content, usable)
            aggregates[method] = result
        if failure is not None:
            method, exc = failure
            raise AggregationError(f"{method} failed: {exc}") from exc
        return aggregates

    async def _primary_score(
        self, request: ChatRequest, aggregates: dict[str, Aggregate], spent: _Spent
    ) -> float | None:
        if not self.spec.score_primary:
            return None
        primary = aggregates[self.spec.primary]
        judged = aggregates.get("best_of_n")
        selected = primary.record.selected
        if judged is not None and judged.record.scores and selected is not None:
            return judged.record.scores.get(selected)
        answer = Candidate(
            index=-1,
            backend=self.spec.primary,
            content=primary.message.content,
            tool_calls=primary.message.tool_calls,
        )
        result = await self.panel.judge.score(request, [answer])
        spent.calls.extend(result.calls)
        return result.scores[0]

    # ------------------------------------------------------------------ lines

    def _source(self, row: PromptRow) -> dict[str, Any]:
        return {"file": self.source, "line": row.line, "id": row.source_id}

    def _record(
        self,
        row: PromptRow,
        usable: list[Candidate],
        aggregates: dict[str, Aggregate],
        primary_score: float | None,
        spent: _Spent,
        started: float,
    ) -> RowOutcome:
        spec = self.spec
        judged = aggregates.get("best_of_n")
        answers = Answers(
            primary=aggregates[spec.primary].message,
            primary_method=spec.primary,
            candidates=usable,
            scores=judged.record.scores if judged is not None else None,
            best=judged.record.selected if judged is not None else None,
        )
        body, note = build_record(spec.format, row.messages, answers, spec.chosen)
        usage = spent.usage()
        cost = self.prices.cost(priced_calls(spent.candidates, spent.calls))
        provenance: dict[str, Any] = {
            "input_hash": row.input_hash,
            "source": self._source(row),
            "config": self.fingerprint,
            "method": spec.primary,
            "teachers": [teacher_entry(c) for c in spent.candidates],
            "aggregations": {
                method: aggregation_entry(
                    aggregate, primary_score if method == spec.primary else None
                )
                for method, aggregate in aggregates.items()
            },
            "scores": (
                {str(i): s for i, s in answers.scores.items()}
                if answers.scores is not None
                else None
            ),
        }
        if note is not None:
            provenance["pair"] = note
        if spent.sampling is not None:
            provenance["sampling"] = spent.sampling.model_dump()
        provenance["usage"] = usage.model_dump_total()
        provenance["cost"] = cost.to_dict()
        provenance["timing"] = _timing(started, spent.candidates)
        line = encode_line({**body, "provenance": provenance})
        return RowOutcome(row.input_hash, True, line, usage.total.total_tokens, cost.usd or 0.0)

    def _failure(
        self, row: PromptRow, stage: str, exc: PolyfuseError, spent: _Spent, started: float
    ) -> RowOutcome:
        usage = usage_by_role(spent.candidates, spent.calls).total
        cost = self.prices.cost(priced_calls(spent.candidates, spent.calls))
        error = ErrorInfo.from_exception(exc)
        entry = {
            "input_hash": row.input_hash,
            "source": self._source(row),
            "config": self.fingerprint,
            "stage": stage,
            "error": {"type": error.type, "message": error.message},
            "usage": usage_dict(usage),
            "cost": cost.to_dict(),
            "timing": _timing(started, spent.candidates),
        }
        return RowOutcome(
            row.input_hash, False, encode_line(entry), usage.total_tokens, cost.usd or 0.0
        )


def _timing(started: float, candidates: Sequence[Candidate]) -> dict[str, Any]:
    return {
        "latency_s": round(time.perf_counter() - started, 4),
        "teacher_latency_s": {
            str(c.index): round(c.latency_s, 4) for c in candidates if c.latency_s is not None
        },
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
