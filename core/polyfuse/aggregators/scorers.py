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
from ..errors import InvalidRequestError
from ..messages import ChatRequest, SamplingParams
from ..prompts import PromptTemplate, load_prompt
from ..results import CallRecord, Candidate, ErrorInfo
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


def _raise_if_misconfigured(url: str, status: int, body: str) -> None:
    """A 4xx that no retry fixes (wrong URL, key or payload) is the caller's error, not a
    candidate's: raise it, so Best-of-N cannot quietly return candidate #0 instead."""
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        detail = " ".join(body.split())[:200]
        raise InvalidRequestError(
            f"the reward model at {url} answered HTTP {status}"
            + (f" ({detail})" if detail else "")
            + "; check RewardModelScorer's url, api_key and payload (build_payload)"
        )


class RewardModelScorer:
    """A reward model behind HTTP.

    By default POSTs ``{"messages": [...], "responses": ["...", ...]}`` (plus ``model`` when
    given) to ``url`` and reads ``{"scores": [...]}`` or a bare list; pass ``build_payload`` and
    ``parse_scores`` to speak another server's dialect.

    Failures: an answer such as 404, 401 or 422 means the scorer is misconfigured and raises
    :class:`~polyfuse.errors.InvalidRequestError` (never a silent fallback). An unreachable
    server, a timeout, a 5xx or 429, or scores that cannot be read leave the candidates
    unscored; Best-of-N then fails and the fusion falls back to the best surviving candidate,
    with the reason in ``fallback_reason`` (unless the policy forbids fallbacks).
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
    ) -> None:
        self.url = url
        self.model = model
        self.api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.timeout = timeout
        self.build_payload = build_payload or _default_payload
        self.parse_scores = parse_scores or _default_parse
        self.name = name

    async def score(self, request: ChatRequest, candidates: Sequence[Candidate]) -> ScoreResult:
        """Score all candidates in one request."""
        import httpx  # here, not at module level: importing httpx costs ~20 MB of memory

        payload = dict(self.build_payload(request, candidates))
        if self.model is not None:
            payload.setdefault("model", self.model)
        headers = {}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        started = time.perf_counter()
        call = CallRecord(role="judge", backend=self.name, model=self.model, usage=Usage.missing())
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, json=payload, headers=headers)
            _raise_if_misconfigured(self.url, response.status_code, response.text)
            response.raise_for_status()
            scores = list(self.parse_scores(response.json()))
            if len(scores) != len(candidates):
                raise ValueError(f"got {len(scores)} scores for {len(candidates)} candidates")
        except InvalidRequestError:
            raise  # misconfigured (see _raise_if_misconfigured): not an unscored candidate
        except (httpx.HTTPError, ValueError) as exc:
            call.error = ErrorInfo.from_exception(exc)
            call.latency_s = time.perf_counter() - started
            return ScoreResult(scores=[None] * len(candidates), calls=[call])
        call.latency_s = time.perf_counter() - started
        return ScoreResult(scores=[float(s) for s in scores], calls=[call])


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
