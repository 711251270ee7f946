"""``Fusion``: the engine object — sample a pool, aggregate, return a :class:`FusionResult`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from typing_extensions import Unpack

from ._sampling import sample_pool
from ._sync import iterate_sync, run_sync
from .adaptive import (
    AdaptiveSampling,
    AnswerReader,
    ConsensusMode,
    consensus_shortcut,
    sample_adaptive,
    saved_usage,
)
from .aggregators._contrib import contributions
from .aggregators.base import Aggregate, AggregationContext, Aggregator
from .aggregators.fuse import Fuse
from .aggregators.vote import Extractor, ExtractorName
from .errors import (
    AggregationError,
    APITimeoutError,
    InvalidRequestError,
    NoCandidatesError,
    PolyfuseError,
)
from .events import AggregationStarted, AnswerRestarted, FusedToken, FusionDone, FusionEvent
from .messages import ChatRequest, MessageInput, SamplingOptions, SamplingParams
from .policy import QuorumPolicy
from .pool import Pool, _params
from .prompts import PROMPT_VERSION
from .redaction import LOG_REDACTOR, client_reason
from .results import AggregationRecord, CallRecord, Candidate, FusionResult, SamplingRecord
from .timeouts import check_total
from .usage import Usage, UsageByRole

__all__ = ["Fusion"]

logger = logging.getLogger("polyfuse")

Prompt = str | Sequence[MessageInput] | ChatRequest
_END = object()


class Fusion:
    """Sample N candidates from a pool and aggregate them into one answer.

    Args:
        pool: where candidates come from (:meth:`Pool.repeat` or :meth:`Pool.panel`).
        aggregator: how they become one answer (default: :class:`Fuse` with the pool's first
            backend as the fusor).
        policy: quorum, deadline and fallback rules (default: wait for all, fall back to the
            best surviving candidate if aggregation fails).
        params: default sampling parameters of every call (a call's own override them).
        adaptive: sample in rounds and stop once the answers are settled
            (:class:`~polyfuse.adaptive.AdaptiveSampling`; default: draw all N at once).
        extract: how to read a candidate's final answer for adaptive stopping and the
            consensus shortcut (a vote extractor name or callable; ``None``: open-ended text).
        consensus: skip the fusor/judge/selector call when the candidates agree: ``auto`` (only
            when ``extract`` is set), ``on`` (also near-identical text) or ``off``.
        consensus_similarity: the word 3-gram agreement that counts as near-identical text.

    Every run method takes the sampling parameters as keyword arguments
    (:class:`~polyfuse.SamplingOptions`: ``temperature``, ``max_tokens``, ``tools``, ...) and
    ``timeout``: the most seconds the whole fusion may take (see :mod:`polyfuse.timeouts`);
    past it every call still in flight is cancelled and :class:`~polyfuse.APITimeoutError` is
    raised.

    Example::

        endpoint = OpenAIEndpoint("http://127.0.0.1:8000/v1", model="qwen")
        fusion = Fusion(Pool.repeat(endpoint, 5))
        result = fusion.run("Why is the sky blue?", temperature=0.8)
        print(result.content, result.usage.total)
    """

    def __init__(
        self,
        pool: Pool,
        aggregator: Aggregator | None = None,
        policy: QuorumPolicy | None = None,
        *,
        params: SamplingParams | Mapping[str, Any] | None = None,
        adaptive: AdaptiveSampling | None = None,
        extract: ExtractorName | Extractor | None = None,
        consensus: ConsensusMode = "auto",
        consensus_similarity: float = 0.9,
    ) -> None:
        if not isinstance(pool, Pool):
            raise InvalidRequestError(
                f"pool must be a polyfuse Pool (got {type(pool).__name__}); "
                "use Pool.repeat(backend, n) or Pool.panel([...])"
            )
        if aggregator is not None and not isinstance(aggregator, Aggregator):
            raise InvalidRequestError(
                f"aggregator must be a polyfuse Aggregator (got {type(aggregator).__name__})"
            )
        self.pool = pool
        self.aggregator = aggregator if aggregator is not None else Fuse(pool.members[0].backend)
        self.policy = policy or QuorumPolicy()
        self.params = _params(params)
        if consensus not in ("auto", "on", "off"):
            raise InvalidRequestError(
                f"consensus must be 'auto', 'on' or 'off' (got {consensus!r})"
            )
        if adaptive is not None and self.policy.quorum is not None:
            raise InvalidRequestError(
                "adaptive sampling and quorum both decide when to stop sampling; set only one"
            )
        self.adaptive = adaptive
        self.reader = AnswerReader(extract)
        self.consensus: ConsensusMode = consensus
        self.consensus_similarity = consensus_similarity

    def __repr__(self) -> str:
        return f"Fusion(pool={self.pool!r}, aggregator={self.aggregator!r})"

    # ------------------------------------------------------------------ async API

    async def arun(
        self,
        messages: Prompt,
        /,
        *,
        timeout: float | None = None,
        **params: Unpack[SamplingOptions],
    ) -> FusionResult:
        """Fuse an answer to ``messages`` (a string, OpenAI-style messages, or a ChatRequest).

        Keyword arguments are sampling parameters for the candidates (``temperature``,
        ``max_tokens``, ``tools``, ``response_format``, ``seed``, ...); ``timeout`` bounds the
        whole fusion in seconds.
        """
        seconds = None if timeout is None else check_total(timeout)
        request = self._request(messages, params)
        return await _bounded(self._execute(request, None, stream_answer=False), seconds)

    async def astream(
        self,
        messages: Prompt,
        /,
        *,
        timeout: float | None = None,
        **params: Unpack[SamplingOptions],
    ) -> AsyncIterator[FusionEvent]:
        """Fuse while yielding events: candidates started/finished/failed, aggregation started,
        the answer's text as :class:`FusedToken` deltas, and finally :class:`FusionDone`.

        Stopping the iteration early cancels every call still in flight; ``timeout`` bounds
        the whole fusion in seconds.
        """
        seconds = None if timeout is None else check_total(timeout)
        request = self._request(messages, params)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        run = _bounded(self._execute(request, queue.put_nowait, stream_answer=True), seconds)
        task = asyncio.ensure_future(run)
        task.add_done_callback(lambda _: queue.put_nowait(_END))
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                yield item
            yield FusionDone(task.result())
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the connections of every backend this fusion uses (for the running loop)."""
        await self.pool.aclose()
        for backend in _aggregator_backends(self.aggregator):
            await backend.aclose()

    async def __aenter__(self) -> Fusion:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ sync API

    def run(
        self,
        messages: Prompt,
        /,
        *,
        timeout: float | None = None,
        **params: Unpack[SamplingOptions],
    ) -> FusionResult:
        """Sync :meth:`arun` (works in scripts, threads and Jupyter)."""
        return run_sync(self.arun(messages, timeout=timeout, **params))

    def stream(
        self,
        messages: Prompt,
        /,
        *,
        timeout: float | None = None,
        **params: Unpack[SamplingOptions],
    ) -> Iterator[FusionEvent]:
        """Sync :meth:`astream`."""
        return iterate_sync(self.astream(messages, timeout=timeout, **params))

    # ------------------------------------------------------------------ engine

    def _request(self, messages: Prompt, params: Mapping[str, Any]) -> ChatRequest:
        if isinstance(messages, ChatRequest):
            request = messages
            if params:
                request = request.with_params(request.params.merged(params))
        else:
            request = ChatRequest.build(messages, **params)
        if self.params.model_fields_set:
            request = request.with_params(self.params.merged(request.params))
        return request

    async def _execute(
        self,
        request: ChatRequest,
        emit: Callable[[FusionEvent], None] | None,
        *,
        stream_answer: bool,
    ) -> FusionResult:
        started = time.perf_counter()
        pool = await self.pool.for_request(request)  # a routed pool picks its members here
        sampling: SamplingRecord | None = None
        if self.adaptive is None:
            candidates = await sample_pool(pool, request, self.policy, emit)
        else:
            candidates, sampling = await sample_adaptive(
                pool,
                request.for_role("candidate"),
                self.policy,
                self.adaptive,
                self.reader,
                emit,
            )
        usable = [c for c in candidates if c.ok]
        if len(usable) < self.policy.min_candidates:
            if not usable:
                raise NoCandidatesError(
                    [(c.label, c.error.message if c.error else c.status) for c in candidates]
                )
            logger.warning(
                "only %d of the %d candidates required succeeded; aggregating them anyway",
                len(usable),
                self.policy.min_candidates,
            )
        first_token: list[float] = []
        streamed: list[str] = []

        def on_token(delta: str) -> None:
            if not first_token:
                first_token.append(time.perf_counter() - started)
            streamed.append(delta)
            if emit is not None:
                emit(FusedToken(delta))

        if emit is not None:
            emit(AggregationStarted(method=self.aggregator.method, candidates=len(usable)))
        ctx = AggregationContext(
            request=request,
            candidates=usable,
            pool=pool,
            policy=self.policy,
            on_token=on_token if stream_answer else None,
        )
        shortcut = self._consensus(usable)
        if shortcut is not None:
            aggregate = shortcut
        else:
            aggregate = await self._aggregate(ctx, usable, streamed, emit)
        if not aggregate.streamed and stream_answer and aggregate.message.content:
            on_token(aggregate.message.content)
        record = aggregate.record
        if (
            self.aggregator.synthesizes
            and record.selected is None
            and record.contributions is None
            and aggregate.message.content
        ):
            record.contributions = contributions(aggregate.message.content, usable)
        return FusionResult.model_construct(
            message=aggregate.message,
            candidates=candidates,
            aggregation=record,
            usage=_usage(candidates, record.calls).model_copy(
                update={
                    "saved": saved_usage(
                        usable,
                        pool.size - len(candidates),
                        aggregator_skipped=shortcut is not None,
                    )
                }
            ),
            latency_s=time.perf_counter() - started,
            ttft_s=first_token[0] if first_token else None,
            metadata={
                "pool": repr(self.pool),
                "aggregator": repr(self.aggregator),
                "n": pool.size,
                "prompt_version": PROMPT_VERSION,
                **pool.metadata,
            },
            sampling=sampling,
        )

    def _consensus(self, usable: list[Candidate]) -> Aggregate | None:
        """The first candidate, without the aggregator call, when the candidates agree."""
        return consensus_shortcut(
            self.aggregator.method,
            usable,
            self.reader,
            self.consensus,
            self.consensus_similarity,
        )

    async def _aggregate(
        self,
        ctx: AggregationContext,
        usable: list[Candidate],
        streamed: list[str],
        emit: Callable[[FusionEvent], None] | None,
    ) -> Aggregate:
        try:
            return await self.aggregator.aggregate(ctx)
        except InvalidRequestError:
            raise  # a misconfigured aggregator (e.g. a scorer URL that answers 404): no fallback
        except PolyfuseError as exc:
            partial = exc.record if isinstance(exc, AggregationError) else None
            if not self.policy.fallback_on_aggregator_error:
                if isinstance(exc, AggregationError):
                    raise
                raise AggregationError(
                    f"{self.aggregator.method} failed: {exc}", record=partial
                ) from exc
            best = _best_surviving(usable)
            reason = f"{type(exc).__name__}: {exc}"
            # The warning names the endpoint, status and a short reason; the upstream's own
            # text (which may quote a key or internal details) goes to debug, redacted.
            logger.warning(
                "aggregation failed (%s); falling back to candidate #%d",
                client_reason(reason, LOG_REDACTOR),
                best.index,
            )
            logger.debug("aggregation failure details: %s", LOG_REDACTOR(reason))
            record = AggregationRecord(
                method=self.aggregator.method,
                selected=best.index,
                calls=list(partial.calls) if isinstance(partial, AggregationRecord) else [],
                fallback_reason=f"{reason}; returned candidate #{best.index} instead",
            )
            if streamed and emit is not None:
                emit(AnswerRestarted(reason=reason))
            return Aggregate(message=best.message(), record=record, streamed=False)


async def _bounded(run: Coroutine[Any, Any, FusionResult], seconds: float | None) -> FusionResult:
    """Await the fusion ``run``; past ``seconds`` cancel it and raise a timeout."""
    if seconds is None:
        return await run
    try:
        return await asyncio.wait_for(run, seconds)
    except asyncio.TimeoutError:
        raise APITimeoutError(
            f"the fusion did not finish within timeout={seconds:g}s; every call still in "
            "flight was cancelled (raise timeout, or set quorum/deadline to answer sooner)",
            endpoint="fusion",
        ) from None


def _best_surviving(candidates: list[Candidate]) -> Candidate:
    """The fallback: a complete answer if there is one, else any non-empty one, lowest index."""

    def rank(c: Candidate) -> tuple[int, int]:
        has_answer = bool(c.text.strip() or c.tool_calls)
        complete = c.finish_reason in ("stop", "tool_calls", None)
        return (0 if has_answer and complete else 1 if has_answer else 2, c.index)

    return min(candidates, key=rank)


def _usage(candidates: list[Candidate], calls: list[CallRecord]) -> UsageByRole:
    cand = Usage.sum(c.usage for c in candidates)
    aggregator = Usage()
    judge = Usage()
    for call in calls:
        usage = call.usage if call.error is None else Usage(calls=1)
        if call.role == "judge":
            judge = judge + usage
        elif call.role == "proposer":
            cand = cand + usage
        else:
            aggregator = aggregator + usage
    return UsageByRole.model_construct(candidates=cand, aggregator=aggregator, judge=judge)


def _aggregator_backends(aggregator: Aggregator) -> list[Any]:
    found: list[Any] = []
    for attr in ("fusor", "selector", "aggregator"):
        backend = getattr(aggregator, attr, None)
        if backend is not None and hasattr(backend, "aclose"):
            found.append(backend)
    scorer = getattr(aggregator, "scorer", None)
    judge = getattr(scorer, "judge", None)
    if judge is not None and hasattr(judge, "aclose"):
        found.append(judge)
    return found
