"""Scorers for Best-of-N: an LLM judge, a reward-model endpoint, or any function."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import SecretStr

from ..backends.base import Backend
from ..errors import APIStatusError, InvalidRequestError, PolyfuseError
from ..messages import ChatRequest, SamplingParams
from ..prompts import PromptTemplate, load_prompt
from ..results import CallRecord, Candidate, ErrorInfo
from ..transport import HTTPTransport, JSONCaller, RetryPolicy, Timeouts, Transport
from ..usage import Usage
from ._render import render_candidate_body, render_conversation
from .base import call_model

__all__ = [
    "FunctionScorer",
    "LLMJudge",
    "RewardModelScorer",
    "ScoreResult",
    "Scorer",
    "parse_judge_score",
]


@dataclass
class ScoreResult:
    """Scores in candidate order (``None`` where scoring failed) and the calls made."""

    scores: list[float | None]
    calls: list[CallRecord] = field(default_factory=list)


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates; higher is better."""

    async def score(self, request: ChatRequest, candidates: Sequence[Candidate]) -> ScoreResult:
        """Score each candidate for ``request``."""
        ...


_SCORE_LINE = re.compile(r"score\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*(\d+(?:\.\d+)?)\W*$")


def parse_judge_score(text: str, low: float = 1, high: float = 10) -> float | None:
    """Read a score from a judge's reply; ``None`` when there is none in range.

    Accepts ``Score: 7``, ``**Score:** 7``, ``7/10``, ``7 out of 10`` or a bare ``7``; the last
    match wins (judges often restate the scale first).
    """
    for pattern in (_SCORE_LINE, _OUT_OF_TEN):
        matches = pattern.findall(text)
        for raw in reversed(matches):
            value = float(raw)
            if low <= value <= high:
                return value
    bare = _BARE.match(text.strip())
    if bare:
        value = float(bare.group(1))
        if low <= value <= high:
            return value
    return None


class LLMJudge:
    """Pointwise LLM judge: rates each candidate 1–10, concurrently.

    Unparseable replies score ``None`` (recorded in the call's note) instead of failing.
    """

    def __init__(
        self,
        judge: Backend,
        *,
        prompt: PromptTemplate | None = None,
        params: SamplingParams | Mapping[str, Any] | None = None,
    ) -> None:
        self.judge = judge
        self.prompt = prompt or load_prompt("judge")
        base = {"temperature": 0.0, "max_tokens": 256}
        if isinstance(params, SamplingParams):
            base.update(params.model_dump(exclude_unset=True))
        elif params:
            base.update(params)
        self.params = SamplingParams.model_validate(base)

    async def _one(
        self, conversation: str, candidate: Candidate
    ) -> tuple[float | None, CallRecord]:
        system, user = self.prompt.render(
            conversation=conversation,
            candidate=f"<response>\n{render_candidate_body(candidate)}\n</response>",
        )
        call = await call_model(
            self.judge,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            self.params,
            role="judge",
            note=f"scores candidate #{candidate.index}",
        )
        if call.error is not None:
            return None, call
        score = parse_judge_score(call.content or "")
        if score is None:
            call.note = f"{call.note}; no score found in the reply"
        return score, call

    async def score(self, request: ChatRequest, candidates: Sequence[Candidate]) -> ScoreResult:
        """Rate every candidate."""
        conversation = render_conversation(request)
        pairs = await asyncio.gather(*(self._one(conversation, c) for c in candidates))
        return ScoreResult(scores=[s for s, _ in pairs], calls=[c for _, c in pairs])


PayloadBuilder = Callable[[ChatRequest, Sequence[Candidate]], Mapping[str, Any]]
ScoreParser = Callable[[Any], Sequence[float]]


def _default_payload(request: ChatRequest, candidates: Sequence[Candidate]) -> Mapping[str, Any]:
    return {"messages": request.wire_messages, "responses": [c.text for c in candidates]}


def _default_parse(data: Any) -> Sequence[float]:
    if isinstance(data, Mapping) and "scores" in data:
        data = data["scores"]
    if isinstance(data, Mapping) and "data" in data:  # embeddings/pooling-style: [{"score": x}]
        data = [item.get("score") for item in data["data"]]
    if not isinstance(data, list):
        raise ValueError("expected a list of scores or {'scores': [...]}")
    return [float(x) for x in data]


_TRANSIENT_4XX = frozenset({408, 409, 425, 429})


def _raise_if_misconfigured(url: str, exc: Exception) -> None:
    """A 4xx that no retry fixes (wrong URL, key or payload) is the caller's error, not a
    candidate's: raise it, so Best-of-N cannot quietly return candidate #0 instead."""
    if isinstance(exc, InvalidRequestError):
        raise exc
    if (
        isinstance(exc, APIStatusError)
        and 400 <= exc.status_code < 500
        and exc.status_code not in _TRANSIENT_4XX
    ):
        raise InvalidRequestError(
            f"the reward model at {url} answered HTTP {exc.status_code} ({exc.server_message}); "
            "check RewardModelScorer's url, api_key and payload (build_payload)"
        ) from exc


class RewardModelScorer:
    """A reward model behind HTTP.

    By default POSTs ``{"messages": [...], "responses": ["...", ...]}`` (plus ``model`` when
    given) to ``url`` and reads ``{"scores": [...]}`` or a bare list; pass ``build_payload`` and
    ``parse_scores`` to speak another server's dialect. Calls go through polyfuse's transport
    with its retry policy (429/5xx/connection failures retried ``max_retries`` times with
    backoff); a failure is recorded on the call (its ``error``), and the candidates get no
    score: Best-of-N then fails and the fusion falls back to the best surviving candidate,
    with the reason in ``fallback_reason`` (unless the policy forbids fallbacks). An answer
    such as 404, 401 or 422 means the scorer itself is misconfigured: it raises
    :class:`~polyfuse.errors.InvalidRequestError`, never a silent fallback.

    Args:
        url: where to POST.
        model: sent as ``model`` when given.
        api_key: sent as a bearer token (never logged).
        timeout: seconds to connect, write, and wait for each read.
        build_payload / parse_scores: the request and answer shapes.
        name: the label in call records.
        max_retries: retries for retryable failures.
        transport: where requests go (default :class:`polyfuse.transport.HTTPTransport`).
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | SecretStr | None = None,
        timeout: float = 60.0,
        build_payload: PayloadBuilder | None = None,
        parse_scores: ScoreParser | None = None,
        name: str = "reward-model",
        max_retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.model = model
        self.api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.timeout = timeout
        self.build_payload = build_payload or _default_payload
        self.parse_scores = parse_scores or _default_parse
        self.name = name
        headers: dict[str, str] = {}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        self._caller = JSONCaller(
            transport or HTTPTransport(),
            "POST",
            url,
            endpoint=name,
            headers=headers,
            timeouts=Timeouts(connect=timeout, read=timeout, write=timeout),
            policy=RetryPolicy(max_retries=max_retries),
        )

    async def score(self, request: ChatRequest, candidates: Sequence[Candidate]) -> ScoreResult:
        """Score all candidates in one request."""
        payload = dict(self.build_payload(request, candidates))
        if self.model is not None:
            payload.setdefault("model", self.model)
        started = time.perf_counter()
        call = CallRecord(role="judge", backend=self.name, model=self.model, usage=Usage.missing())
        try:
            data = await self._caller(payload)
            scores = list(self.parse_scores(data))
            if len(scores) != len(candidates):
                raise ValueError(f"got {len(scores)} scores for {len(candidates)} candidates")
            values: list[float | None] = [float(s) for s in scores]
        except (PolyfuseError, ValueError, TypeError) as exc:
            _raise_if_misconfigured(self.url, exc)
            call.error = ErrorInfo.from_exception(exc)
            call.retries = call.error.retries
            call.latency_s = time.perf_counter() - started
            return ScoreResult(scores=[None] * len(candidates), calls=[call])
        call.latency_s = time.perf_counter() - started
        return ScoreResult(scores=values, calls=[call])

    async def aclose(self) -> None:
        """Close the running loop's connections."""
        await self._caller.aclose()


class FunctionScorer:
    """Scores with your function ``(request, candidate) -> float`` (sync or async)."""

    def __init__(self, fn: Callable[[ChatRequest, Candidate], float | Awaitable[float]]) -> None:
        self.fn = fn

    async def score(self, request: ChatRequest, candidates: Sequence[Candidate]) -> ScoreResult:
        """Call the function on every candidate."""
        scores: list[float | None] = []
        for candidate in candidates:
            value = self.fn(request, candidate)
            if inspect.isawaitable(value):
                value = await value
            scores.append(float(value))
        return ScoreResult(scores=scores)
