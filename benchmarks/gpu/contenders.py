"""What runs against the GPU server: direct calls (the bound) and fusions, each as a *unit*.

Every contender is built for one setting (base URL, model, prompt, output length, N, and the
number of requests it may keep in flight at the server), opened inside the event loop that
drives it, run any number of times concurrently, and closed.

* :class:`DirectCall` — one chat completion over a pooled ``httpx`` client: the bound.
* :class:`DirectMix` — direct calls with a fusion's request mix (N user prompts, then one
  fusor prompt with the candidates in it), independent of each other: the bound at the same
  token budget, prefill included.
* :class:`PolyfuseFusion` — ``Fusion(Pool.repeat(endpoint, N), Fuse(endpoint))``.
* :class:`LangChainFusion` — the same fusion through ``langchain_polyfuse.ChatFusion``.
* :class:`LlamaIndexFusion` — the same fusion through ``llama_index.llms.polyfuse.FusionLLM``.
* :class:`HarnessPeer` — a contender of the CPU benchmark harness (``benchmarks.harness``):
  what users write instead (``asyncio.gather`` over ``AsyncOpenAI``, LangChain
  ``RunnableParallel``, LlamaIndex ``TreeSummarize``), pointed at the GPU server.

Every fusion contender shares ONE endpoint between the candidates and the fusor, capped at
``max_in_flight`` requests, so the server sees at most as many requests as the direct-call
bound it is compared with. The server ignores ``n``, so every contender is told so
(``supports_n=False``): N separate requests per fusion.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from polyfuse import (
    Backend,
    ChatRequest,
    Completion,
    Fuse,
    FusedToken,
    Fusion,
    FusionDone,
    FusionResult,
    OpenAIEndpoint,
    Pool,
    StreamDelta,
)

from .load import Outcome

__all__ = [
    "CONTENDERS",
    "DEFAULT_PROMPT",
    "Contender",
    "ContenderUnavailable",
    "DirectCall",
    "DirectMix",
    "HarnessPeer",
    "LangChainFusion",
    "LlamaIndexFusion",
    "PolyfuseFusion",
    "Setting",
    "capture_fusor_messages",
    "in_flight",
]

DEFAULT_PROMPT = (
    "Explain in a short paragraph why the sky is blue during the day and red at sunset, "
    "and name the physical effect involved."
)
"""The user question every contender sends (the CPU harness's prompt)."""


class ContenderUnavailable(RuntimeError):
    """The contender cannot run here (a package or an adapter is missing); says how to fix."""


@dataclass(frozen=True)
class Setting:
    """Where and what every unit sends.

    Attributes:
        base_url: the server's API root (``http://127.0.0.1:8011/v1``).
        model: the ``model`` field (``transformers serve`` wants the model directory).
        max_tokens: every call's output length (fixed by the server's generation config).
        n: candidates per fusion (ignored by :class:`DirectCall`).
        max_in_flight: requests this contender may have at the server at once.
        prompt: the user question.
    """

    base_url: str
    model: str
    max_tokens: int = 128
    n: int = 3
    max_in_flight: int = 64
    prompt: str = DEFAULT_PROMPT


class Contender(ABC):
    """One way of producing an answer; :meth:`run` and :meth:`run_stream` are one unit."""

    name: ClassVar[str]
    label: ClassVar[str]
    calls_per_unit_extra: ClassVar[int] = 1
    """Calls per unit on top of ``n`` candidates (the fusor); 0 for direct calls."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting

    @property
    def calls(self) -> int:
        """Server calls one unit makes."""
        return self.setting.n + self.calls_per_unit_extra

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Build clients in the running loop."""

    @abstractmethod
    async def run(self) -> Outcome:
        """One unit, non-streaming."""

    @abstractmethod
    async def run_stream(self) -> Outcome:
        """One unit with the answer streamed; ``Outcome.ttft_s`` is set."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close the clients."""


# ---------------------------------------------------------------------- the bound


class DirectCall(Contender):
    """One chat completion, no fusion: the server-bound rate every fusion is compared with."""

    name: ClassVar[str] = "direct"
    label: ClassVar[str] = "direct call"

    @property
    def calls(self) -> int:
        return 1

    async def open(self) -> None:
        limit = self.setting.max_in_flight
        self.client = httpx.AsyncClient(
            base_url=self.setting.base_url,
            timeout=httpx.Timeout(600.0, connect=10.0, pool=None),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
        self.body = {
            "model": self.setting.model,
            "messages": [{"role": "user", "content": self.setting.prompt}],
            "max_tokens": self.setting.max_tokens,
        }

    async def run(self) -> Outcome:
        response = await self.client.post("/chat/completions", json=self.body)
        response.raise_for_status()
        usage = response.json().get("usage") or {}
        return Outcome(
            calls=1,
            completion_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
        )

    async def run_stream(self) -> Outcome:
        started = time.perf_counter()
        ttft: float | None = None
        usage: dict[str, Any] = {}
        body = {**self.body, "stream": True, "stream_options": {"include_usage": True}}
        async with self.client.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                chunk = json.loads(line[5:])
                if ttft is None and any(
                    (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
                ):
                    ttft = time.perf_counter() - started
                if chunk.get("usage"):
                    usage = chunk["usage"]
        return Outcome(
            calls=1,
            completion_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
            ttft_s=ttft,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


class DirectMix(DirectCall):
    """Independent direct calls in a fusion's proportions: of every N+1 calls, N send the
    user prompt and one sends ``fusor_messages`` (a real fusor request, candidates inside).

    Same calls, same prompt and output tokens as the fusions, but no call waits for another:
    what the server can do with this token budget, the bound fusions are held to.
    """

    name: ClassVar[str] = "direct-mix"
    label: ClassVar[str] = "direct calls, fusion mix"

    def __init__(self, setting: Setting, fusor_messages: list[dict[str, Any]]) -> None:
        super().__init__(setting)
        self.fusor_messages = fusor_messages
        self._turn = itertools.count()

    async def open(self) -> None:
        await super().open()
        self.fusor_body = {**self.body, "messages": self.fusor_messages}

    async def run(self) -> Outcome:
        fusor_turn = next(self._turn) % (self.setting.n + 1) == self.setting.n
        body = self.fusor_body if fusor_turn else self.body
        response = await self.client.post("/chat/completions", json=body)
        response.raise_for_status()
        usage = response.json().get("usage") or {}
        return Outcome(
            calls=1,
            completion_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
        )


class _Recorder:
    """A backend that forwards to another and keeps the messages of the last request."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.supports_n: bool | None = inner.supports_n
        self.messages: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        self.messages = request.wire_messages
        return await self.inner.complete(request, n=n)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        self.messages = request.wire_messages
        async for delta in self.inner.stream(request):
            yield delta

    async def aclose(self) -> None:
        await self.inner.aclose()


async def capture_fusor_messages(setting: Setting) -> list[dict[str, Any]]:
    """Run one fusion and return the messages its fusor was sent (for :class:`DirectMix`)."""
    endpoint = _endpoint(setting)
    recorder = _Recorder(endpoint)
    fusion = Fusion(Pool.repeat(endpoint, setting.n), Fuse(recorder))
    try:
        await fusion.arun(setting.prompt, max_tokens=setting.max_tokens)
    finally:
        await fusion.aclose()
    return list(recorder.messages)


def in_flight(endpoint: OpenAIEndpoint) -> int | None:
    """Requests the endpoint has in flight in the running loop (None before its first call).

    Reads the endpoint's concurrency semaphore: a benchmark diagnostic, not public API.
    """
    state = endpoint._states.get(asyncio.get_running_loop())
    if state is None:
        return None
    return endpoint.config.max_concurrency - state.semaphore._value


# ---------------------------------------------------------------------- polyfuse


def _endpoint(setting: Setting) -> OpenAIEndpoint:
    return OpenAIEndpoint(
        setting.base_url,
        setting.model,
        supports_n=False,
        max_concurrency=setting.max_in_flight,
        max_retries=0,
        read_timeout=600.0,
    )


def fusion_details(result: FusionResult) -> dict[str, Any]:
    """Per-fusion timings: the slowest candidate, the fusor's own TTFT and latency, and the
    engine's overhead over that critical path (fused TTFT minus both)."""
    latencies = [c.latency_s for c in result.candidates if c.latency_s is not None]
    fusor = result.aggregation.calls[0] if result.aggregation.calls else None
    details: dict[str, Any] = {
        "slowest_candidate_s": round(max(latencies), 4) if latencies else None,
        "fusor_ttft_s": fusor.ttft_s if fusor else None,
        "fusor_latency_s": fusor.latency_s if fusor else None,
        "fusor_prompt_tokens": fusor.usage.prompt_tokens if fusor else None,
    }
    if latencies and fusor is not None and fusor.ttft_s is not None and result.ttft_s:
        details["overhead_s"] = round(result.ttft_s - max(latencies) - fusor.ttft_s, 4)
    return details


def _outcome(result: FusionResult, calls: int, ttft: float | None = None) -> Outcome:
    total = result.usage.total
    return Outcome(
        calls=calls,
        completion_tokens=total.completion_tokens,
        prompt_tokens=total.prompt_tokens,
        ttft_s=ttft,
        extra=fusion_details(result) if ttft is not None else {},
    )


class PolyfuseFusion(Contender):
    """The engine itself: ``Fusion(Pool.repeat(endpoint, N), Fuse(endpoint))``."""

    name: ClassVar[str] = "polyfuse"
    label: ClassVar[str] = "polyfuse Fusion"

    async def open(self) -> None:
        self.endpoint = _endpoint(self.setting)
        self.fusion = Fusion(Pool.repeat(self.endpoint, self.setting.n), Fuse(self.endpoint))
        self.params = {"max_tokens": self.setting.max_tokens}

    async def run(self) -> Outcome:
        return _outcome(await self.fusion.arun(self.setting.prompt, **self.params), self.calls)

    async def run_stream(self) -> Outcome:
        started = time.perf_counter()
        ttft: float | None = None
        result: FusionResult | None = None
        async for event in self.fusion.astream(self.setting.prompt, **self.params):
            if isinstance(event, FusedToken) and ttft is None:
                ttft = time.perf_counter() - started
            elif isinstance(event, FusionDone):
                result = event.result
        assert result is not None, "astream ended without FusionDone"
        return _outcome(result, self.calls, ttft)

    async def aclose(self) -> None:
        await self.fusion.aclose()


# ---------------------------------------------------------------------- adapters


class LangChainFusion(Contender):
    """The same fusion behind LangChain: ``ChatFusion(pool=..., fusor=...)``, ``ainvoke``."""

    name: ClassVar[str] = "langchain-chatfusion"
    label: ClassVar[str] = "LangChain ChatFusion"

    async def open(self) -> None:
        try:
            from langchain_polyfuse import ChatFusion
        except ImportError as exc:
            raise ContenderUnavailable(
                f"{exc}; install the LangChain extra: pip install -e '.[langchain]'"
            ) from None
        endpoint = _endpoint(self.setting)
        self.endpoint = endpoint
        self.chat = ChatFusion(
            pool=Pool.repeat(endpoint, self.setting.n),
            fusor=endpoint,
            max_tokens=self.setting.max_tokens,
            max_retries=0,
        )

    def _usage(self, message: Any) -> tuple[int | None, int | None]:
        usage = getattr(message, "usage_metadata", None) or {}
        return usage.get("output_tokens"), usage.get("input_tokens")

    async def run(self) -> Outcome:
        message = await self.chat.ainvoke(self.setting.prompt)
        completion, prompt = self._usage(message)
        return Outcome(calls=self.calls, completion_tokens=completion, prompt_tokens=prompt)

    async def run_stream(self) -> Outcome:
        started = time.perf_counter()
        ttft: float | None = None
        completion = prompt = None
        async for chunk in self.chat.astream(self.setting.prompt):
            if ttft is None and chunk.content:
                ttft = time.perf_counter() - started
            if getattr(chunk, "usage_metadata", None):
                completion, prompt = self._usage(chunk)
        return Outcome(
            calls=self.calls, completion_tokens=completion, prompt_tokens=prompt, ttft_s=ttft
        )

    async def aclose(self) -> None:
        await self.endpoint.aclose()


class LlamaIndexFusion(Contender):
    """The same fusion behind LlamaIndex: ``FusionLLM(Fusion(...))``, ``achat``."""

    name: ClassVar[str] = "llamaindex-fusionllm"
    label: ClassVar[str] = "LlamaIndex FusionLLM"

    async def open(self) -> None:
        try:
            from llama_index.core.llms import ChatMessage

            from llama_index.llms.polyfuse import FusionLLM
        except ImportError as exc:
            raise ContenderUnavailable(
                f"{exc}; install the LlamaIndex extra: pip install -e '.[llamaindex]'"
            ) from None
        self.endpoint = _endpoint(self.setting)
        fusion = Fusion(Pool.repeat(self.endpoint, self.setting.n), Fuse(self.endpoint))
        self.llm = FusionLLM(fusion, params={"max_tokens": self.setting.max_tokens})
        self.messages = [ChatMessage(role="user", content=self.setting.prompt)]

    @staticmethod
    def _usage(raw: Any) -> tuple[int | None, int | None]:
        usage = (raw or {}).get("usage") or {} if isinstance(raw, dict) else {}
        return usage.get("completion_tokens"), usage.get("prompt_tokens")

    async def run(self) -> Outcome:
        response = await self.llm.achat(self.messages)
        completion, prompt = self._usage(response.raw)
        return Outcome(calls=self.calls, completion_tokens=completion, prompt_tokens=prompt)

    async def run_stream(self) -> Outcome:
        started = time.perf_counter()
        ttft: float | None = None
        last: Any = None
        stream = await self.llm.astream_chat(self.messages)
        async for chunk in stream:
            if ttft is None and chunk.delta:
                ttft = time.perf_counter() - started
            last = chunk
        completion, prompt = self._usage(last.raw if last is not None else None)
        return Outcome(
            calls=self.calls, completion_tokens=completion, prompt_tokens=prompt, ttft_s=ttft
        )

    async def aclose(self) -> None:
        await self.endpoint.aclose()


# ---------------------------------------------------------------------- CPU-harness peers


class HarnessPeer(Contender):
    """A contender of the CPU benchmark harness (``benchmarks.harness.contenders``), given
    the GPU server's URL; it reports no usage, so tokens are not counted for it."""

    name: ClassVar[str] = "harness"
    label: ClassVar[str] = "harness peer"

    def __init__(self, setting: Setting, peer: str) -> None:
        super().__init__(setting)
        self.peer = peer

    async def open(self) -> None:
        try:
            from benchmarks.harness.contenders import CONTENDERS as PEERS
            from benchmarks.harness.workload import Workload
        except ImportError as exc:
            raise ContenderUnavailable(f"the CPU harness is not importable: {exc}") from None
        if self.peer not in PEERS:
            raise ContenderUnavailable(f"the CPU harness has no contender {self.peer!r}")
        workload = Workload.single(
            self.setting.base_url,
            n=self.setting.n,
            model=self.setting.model,
            prompt=self.setting.prompt,
            max_tokens=self.setting.max_tokens,
            supports_n=False,
            max_connections=self.setting.max_in_flight,
        )
        self.contender = PEERS[self.peer](workload)
        self.label_override = getattr(self.contender, "label", self.peer)
        await self.contender.open()

    async def run(self) -> Outcome:
        await self.contender.fuse()
        return Outcome(calls=self.calls)

    async def run_stream(self) -> Outcome:
        started = time.perf_counter()
        first: list[float] = []
        await self.contender.fuse_stream(lambda: first.append(time.perf_counter() - started))
        return Outcome(calls=self.calls, ttft_s=first[0] if first else None)

    async def aclose(self) -> None:
        await self.contender.aclose()


CONTENDERS: dict[str, type[Contender]] = {
    c.name: c for c in (DirectCall, PolyfuseFusion, LangChainFusion, LlamaIndexFusion)
}
"""The contenders by name (harness peers are named ``harness:<peer>``)."""
