"""The live objects a distillation uses — pool, aggregators, judge, policy — built from a
:class:`~polyfuse.distill.spec.DistillSpec`, and how many rows to keep in flight so that every
endpoint's concurrency limit stays full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..adaptive import consensus_shortcut, sample_adaptive
from ..aggregators import Aggregate, Aggregator, LLMJudge
from ..backends import Backend, EndpointConfig
from ..fusion import Fusion
from ..messages import ChatRequest
from ..policy import QuorumPolicy
from ..pool import Pool
from ..presets import PresetsConfig
from ..registry import PresetRegistry
from ..results import Candidate, SamplingRecord
from .spec import METHOD_OF, DistillSpec

__all__ = ["Admission", "Panel"]

DEFAULT_LIMIT: int = EndpointConfig.model_fields["max_concurrency"].default
"""Requests in flight per endpoint when the presets do not say (OpenAIEndpoint's default)."""
_UNKNOWN_BACKEND_LIMIT = 16
_MAX_ROWS_IN_FLIGHT = 4096


@dataclass(frozen=True)
class Admission:
    """How many rows may be sampling at once, and in flight at all.

    A row holds a *sampling slot* only while its candidates are drawn, so rows that wait for the
    fusor or the judge never keep the teachers idle; ``max_in_flight`` bounds memory.
    """

    sampling_slots: int
    max_in_flight: int

    def capped(self, max_rows_in_flight: int | None) -> Admission:
        """This admission with at most ``max_rows_in_flight`` rows in flight (``None``: as is)."""
        if max_rows_in_flight is None:
            return self
        return Admission(
            sampling_slots=min(self.sampling_slots, max_rows_in_flight),
            max_in_flight=max_rows_in_flight,
        )

    def split(self, workers: int) -> Admission:
        """The share of one of ``workers`` equal workers (at least one row each)."""
        return Admission(
            sampling_slots=max(1, math.ceil(self.sampling_slots / workers)),
            max_in_flight=max(1, math.ceil(self.max_in_flight / workers)),
        )


@dataclass
class Panel:
    """Teachers, aggregators and judge for one process (one event loop at a time).

    ``fusion`` is the preset's fusion: :meth:`sample` follows its adaptive sampling and
    :meth:`shortcut` its consensus shortcut, as ``polyfuse ask`` and ``serve`` do.
    """

    pool: Pool
    aggregators: dict[str, Aggregator]
    policy: QuorumPolicy
    judge: LLMJudge
    registry: PresetRegistry
    fusion: Fusion | None = None

    async def sample(self, request: ChatRequest) -> tuple[list[Candidate], SamplingRecord | None]:
        """The teachers' candidates: all N at once, or in rounds when the preset sets
        ``adaptive`` (then also how sampling went)."""
        fusion = self.fusion
        if fusion is None or fusion.adaptive is None:
            return await self.pool.sample(request, policy=self.policy), None
        pool = await self.pool.for_request(request)
        return await sample_adaptive(
            pool, request.for_role("candidate"), self.policy, fusion.adaptive, fusion.reader
        )

    def shortcut(self, method: str, usable: list[Candidate]) -> Aggregate | None:
        """``method``'s answer without its call when the candidates agree (the preset's
        ``consensus`` setting), else ``None``."""
        fusion = self.fusion
        if fusion is None:
            return None
        return consensus_shortcut(
            method, usable, fusion.reader, fusion.consensus, fusion.consensus_similarity
        )

    @classmethod
    def build(cls, spec: DistillSpec, *, share: int = 1) -> Panel:
        """Build the endpoints and aggregators a spec names.

        Args:
            spec: what to build.
            share: the number of processes that will drive the same endpoints at once (Ray
                actors); each gets ``1/share`` of every endpoint's ``max_concurrency``.
        """
        registry = PresetRegistry(_subset(spec, share)).start()
        fusion_spec = registry.spec(spec.preset)
        fusion = fusion_spec.build()
        fusor = registry.backend(spec.fusor_endpoint)
        judge_backend = registry.backend(spec.judge_endpoint)
        aggregators: dict[str, Aggregator] = {}
        for strategy in spec.strategies:
            aggregators[METHOD_OF[strategy]] = fusion_spec.aggregator(
                judge_backend if strategy == "best-of-n" else fusor, strategy=strategy
            )
        return cls(
            pool=fusion.pool,
            aggregators=aggregators,
            policy=fusion.policy,
            judge=LLMJudge(judge_backend),
            registry=registry,
            fusion=fusion,
        )

    def admission(self) -> Admission:
        """Rows to keep sampling and in flight so that no endpoint's limit runs dry.

        A routed pool asks only ``k`` of its members per row: a member is then asked by about
        ``k / members`` of the rows (routing spread evenly), so more rows are kept sampling to
        fill its limit, and a row's candidates (what best-of-n judges) are those of ``k``
        members, not of all.
        """
        members = self.pool.members
        asked = max(1, min(self.pool.members_per_request, len(members)))
        share = asked / len(members)  # of the rows, those that ask a given member
        sampling = 1
        for backend in self.pool.backends:
            calls = 0
            for member in members:
                if member.backend is backend:
                    batched = (
                        member.samples > 1
                        and backend.supports_n is not False
                        and not self.policy.stream_candidates
                    )
                    calls += 1 if batched else member.samples
            per_row = max(calls, 1) * share
            sampling = max(sampling, math.ceil(_limit(backend) / per_row - 1e-9))
        # The most candidates one row can have: its k largest members' samples.
        row_size = sum(sorted((m.samples for m in members), reverse=True)[:asked])
        aggregating = 1
        for method, aggregator in self.aggregators.items():
            for backend in _backends_of(aggregator):
                calls = row_size if method == "best_of_n" else 1
                aggregating = max(aggregating, math.ceil(_limit(backend) / calls))
        in_flight = min(2 * sampling + aggregating, _MAX_ROWS_IN_FLIGHT)
        return Admission(sampling_slots=min(sampling, in_flight), max_in_flight=in_flight)

    async def aclose(self) -> None:
        """Close every connection of the running loop and stop embedded models."""
        await self.registry.aclose()


def _limit(backend: Backend) -> int:
    config = getattr(backend, "config", None)
    limit = getattr(config, "max_concurrency", None)
    return limit if isinstance(limit, int) and limit > 0 else _UNKNOWN_BACKEND_LIMIT


def _backends_of(aggregator: Aggregator) -> list[Backend]:
    found: list[Any] = [getattr(aggregator, a, None) for a in ("fusor", "selector", "aggregator")]
    found.append(getattr(getattr(aggregator, "scorer", None), "judge", None))
    return [b for b in found if isinstance(b, Backend)]


def _subset(spec: DistillSpec, share: int) -> PresetsConfig:
    """The presets reduced to this spec's preset and endpoints, with limits shared out."""
    preset = spec.preset_spec
    used = {*preset.endpoint_names, spec.fusor_endpoint, spec.judge_endpoint}
    endpoints = {}
    for name in used:
        endpoint = spec.presets.endpoints[name]
        if share > 1:
            limit = endpoint.max_concurrency or DEFAULT_LIMIT
            endpoint = endpoint.model_copy(
                update={"max_concurrency": max(1, math.ceil(limit / share))}
            )
        endpoints[name] = endpoint
    return PresetsConfig(endpoints=endpoints, presets={spec.preset: preset})
