"""Concurrent sampling of a pool's candidates, with ``n`` batching, seeds and quorum."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import Completion, StreamAccumulator
from .errors import APIStatusError, PolyfuseError
from .events import CandidateFailed, CandidateFinished, CandidateStarted, FusionEvent
from .messages import ChatRequest, SamplingParams
from .policy import QuorumPolicy
from .pool import Pool, PoolMember
from .redaction import LOG_REDACTOR
from .results import Candidate, ErrorInfo
from .usage import Usage

logger = logging.getLogger("polyfuse")

# Statuses with which servers refuse ``n > 1`` (llama.cpp: 400 or 500 "Only one completion
# choice is allowed"; others 422/501). On these we learn "no n" and fan out instead.
_N_REFUSAL_STATUSES = frozenset({400, 422, 500, 501})


@dataclass(slots=True)
class _Job:
    member: PoolMember
    indices: list[int]
    request: ChatRequest
    seeds: list[int | None]
    started: float = 0.0

    @property
    def batched(self) -> bool:
        return len(self.indices) > 1


async def _call(job: _Job, stream: bool) -> list[Completion]:
    backend = job.member.backend
    job.started = time.perf_counter()
    if not stream:
        return await backend.complete(job.request, n=len(job.indices))
    acc = StreamAccumulator()
    iterator = backend.stream(job.request)
    try:
        async for delta in iterator:
            if acc.ttft_s is None and (delta.content or delta.tool_calls):
                acc.ttft_s = time.perf_counter() - job.started
            acc.add(delta)
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]
    return [acc.completion(time.perf_counter() - job.started)]


class _Sampler:
    def __init__(
        self,
        pool: Pool,
        request: ChatRequest,
        policy: QuorumPolicy,
        on_event: Callable[[FusionEvent], None] | None,
    ) -> None:
        self.pool = pool
        self.request = request
        self.policy = policy
        self.emit = on_event
        self.tasks: dict[asyncio.Task[list[Completion]], _Job] = {}
        self.candidates: dict[int, Candidate] = {}
        self.successes = 0

    # -- building jobs

    def _request_for(self, params: SamplingParams, seed: int | None) -> ChatRequest:
        if seed is not None and seed != params.seed:
            params = params.model_copy(update={"seed": seed})
        return self.request if params is self.request.params else self.request.with_params(params)

    def _spawn(self, member: PoolMember, indices: list[int], params: SamplingParams) -> None:
        base_seed = params.seed
        seeds = [None if base_seed is None else base_seed + i for i in indices]
        job = _Job(member, indices, self._request_for(params, seeds[0]), seeds)
        task = asyncio.ensure_future(_call(job, self.policy.stream_candidates))
        self.tasks[task] = job
        if self.emit is not None:
            for index in indices:
                self.emit(CandidateStarted(index=index, backend=member.backend.name))

    def _params_for(self, member: PoolMember) -> SamplingParams:
        if not member.params.model_fields_set:
            return self.request.params
        return self.request.params.merged(member.params)

    def start(self) -> None:
        index = 0
        for member in self.pool.members:
            indices = list(range(index, index + member.samples))
            index += member.samples
            params = self._params_for(member)
            batch = (
                len(indices) > 1
                and not self.policy.stream_candidates
                and member.backend.supports_n is not False
            )
            if batch:
                self._spawn(member, indices, params)
            else:
                for i in indices:
                    self._spawn(member, [i], params)

    # -- results

    def _record_ok(self, job: _Job, index: int, seed: int | None, completion: Completion) -> None:
        backend = job.member.backend
        candidate = Candidate.model_construct(
            index=index,
            backend=backend.name,
            model=completion.model or backend.model,
            status="ok",
            content=completion.content,
            tool_calls=completion.tool_calls,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_s=time.perf_counter() - job.started,
            ttft_s=completion.ttft_s,
            seed=seed,
            error=None,
            retries=completion.retries,
        )
        self.candidates[index] = candidate
        self.successes += 1
        if self.emit is not None:
            self.emit(CandidateFinished(candidate))

    def _record_failure(
        self, job: _Job, index: int, seed: int | None, error: ErrorInfo, *, cancelled: bool
    ) -> None:
        backend = job.member.backend
        candidate = Candidate.model_construct(
            index=index,
            backend=backend.name,
            model=backend.model,
            status="cancelled" if cancelled else "failed",
            content=None,
            tool_calls=None,
            finish_reason=None,
            # A cancelled call may have generated tokens we will never hear about.
            usage=Usage.missing() if cancelled else Usage(calls=1),
            latency_s=time.perf_counter() - job.started if job.started else None,
            ttft_s=None,
            seed=seed,
            error=error,
            retries=error.retries,
        )
        self.candidates[index] = candidate
        if self.emit is not None:
            self.emit(CandidateFailed(candidate))

    def _finish(self, task: asyncio.Task[list[Completion]]) -> None:
        job = self.tasks.pop(task)
        backend = job.member.backend
        exc = task.exception()
        if exc is None:
            completions = task.result()
            if job.batched:
                if len(completions) < len(job.indices):
                    if backend.supports_n is None:
                        logger.info(
                            "%s returned %d of n=%d choices; fanning out from now on",
                            backend.name,
                            len(completions),
                            len(job.indices),
                        )
                        backend.supports_n = False
                    missing = job.indices[len(completions) :]
                    self._respawn(job, missing)
                elif backend.supports_n is None:
                    backend.supports_n = True
            for index, seed, completion in zip(job.indices, job.seeds, completions, strict=False):
                self._record_ok(job, index, seed, completion)
            return
        if (
            job.batched
            and backend.supports_n is None
            and isinstance(exc, APIStatusError)
            and exc.status_code in _N_REFUSAL_STATUSES
        ):
            # Status only: the upstream's own text may quote our key (it goes to debug, redacted).
            logger.info(
                "%s refused n=%d (HTTP %d); fanning out",
                backend.name,
                len(job.indices),
                exc.status_code,
            )
            logger.debug(
                "%s refused n=%d: %s", backend.name, len(job.indices), LOG_REDACTOR(str(exc))
            )
            backend.supports_n = False
            self._respawn(job, job.indices)
            return
        if not isinstance(exc, PolyfuseError):
            logger.warning("candidate call to %s raised %r", backend.name, exc, exc_info=exc)
        info = ErrorInfo.from_exception(exc)
        for index, seed in zip(job.indices, job.seeds, strict=False):
            self._record_failure(job, index, seed, info, cancelled=False)

    def _respawn(self, job: _Job, indices: list[int]) -> None:
        params = self._params_for(job.member)
        for index in indices:
            self._spawn(job.member, [index], params)

    async def _cancel_rest(self, reason: str) -> None:
        pending = list(self.tasks)
        for task in pending:
            task.cancel()
        # Wait until every stream is really closed before the aggregator starts.
        await asyncio.gather(*pending, return_exceptions=True)
        info = ErrorInfo(type="Cancelled", message=reason)
        for task in pending:
            job = self.tasks.pop(task)
            if not task.cancelled() and task.exception() is None:
                # Finished in the same instant it was cancelled: keep it.
                self.tasks[task] = job
                self._finish(task)
                continue
            for index, seed in zip(job.indices, job.seeds, strict=False):
                self._record_failure(job, index, seed, info, cancelled=True)

    async def run(self) -> list[Candidate]:
        self.start()
        policy = self.policy
        deadline_at = time.perf_counter() + policy.deadline if policy.deadline is not None else None
        try:
            while self.tasks:
                timeout = None
                if deadline_at is not None and self.successes >= policy.min_candidates:
                    timeout = max(0.0, deadline_at - time.perf_counter())
                done, _ = await asyncio.wait(
                    self.tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    self._finish(task)
                if not self.tasks:
                    break
                if policy.quorum is not None and self.successes >= policy.quorum:
                    await self._cancel_rest(f"cancelled: quorum of {policy.quorum} reached")
                elif (
                    deadline_at is not None
                    and time.perf_counter() >= deadline_at
                    and self.successes >= policy.min_candidates
                ):
                    await self._cancel_rest(f"cancelled: deadline of {policy.deadline}s passed")
        finally:
            if self.tasks:  # we were cancelled ourselves: stop every upstream call
                pending = list(self.tasks)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        return [self.candidates[i] for i in sorted(self.candidates)]


async def sample_pool(
    pool: Pool,
    request: ChatRequest,
    policy: QuorumPolicy,
    on_event: Callable[[FusionEvent], None] | None = None,
) -> list[Candidate]:
    """Sample every candidate of ``pool`` for ``request`` (see :meth:`Pool.sample`)."""
    return await _Sampler(pool, request.for_role("candidate"), policy, on_event).run()
