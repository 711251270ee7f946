"""``ChatFusion``: a LangChain chat model whose every answer is fused from N candidates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, SkipValidation, ValidationError

from polyfuse import (
    AggregationError,
    Backend,
    ChatRequest,
    Fusion,
    FusionDone,
    FusionEvent,
    FusionOptions,
    FusionResult,
    FusionSpec,
    InvalidRequestError,
    OpenAIEndpoint,
    Pool,
    PoolMember,
    TimeoutLike,
)
from polyfuse.timeouts import endpoint_timeouts

from ._assembly import FusionPlan, member_backend, shared_endpoint
from ._convert import to_openai_messages
from ._results import ChunkStream, message_from_result
from ._structured import StructuredMethod, structured_output
from .backends import LangChainBackend

__all__ = [
    "CandidateModel",
    "ChatFusion",
    "EndpointRef",
    "FusionListener",
    "FusorRef",
    "listen_to_fusions",
]

_MAX_OVERRIDES = 16

EndpointRef = str | Mapping[str, Any] | Backend
"""A panel endpoint: a model name served at ``base_url``, a dict of
:class:`~polyfuse.OpenAIEndpoint` settings (``{"base_url": ..., "model": ...}``), or a backend."""

CandidateModel = BaseChatModel | Backend
"""A candidate: a LangChain chat model (``ChatOpenAI``, ``ChatOllama``, ...) or a backend."""

FusorRef = BaseChatModel | Backend | str | Mapping[str, Any]
"""The fusor: a LangChain chat model, a backend, a model name at ``base_url`` or a settings
dict."""

FusionListener = Callable[[FusionEvent], None]
"""Receives every event of a fusion, in order, ending with :class:`~polyfuse.FusionDone`."""

_listener: ContextVar[FusionListener | None] = ContextVar("polyfuse_fusion_listener", default=None)


@contextmanager
def listen_to_fusions(listener: FusionListener) -> Generator[None, None, None]:
    """Report the events of every ``ChatFusion`` call made inside this block to ``listener``.

    The listener runs on the thread or task that called the model and sees every event of the
    fusion (candidates started, finished or failed, aggregation started, fused tokens, and
    finally :class:`~polyfuse.FusionDone` with the whole :class:`~polyfuse.FusionResult`), in
    ``invoke`` as well as in ``stream``. An exception it raises aborts the call. The LangGraph
    node uses this to stream progress and to keep the fusion record in the graph state.
    """
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@dataclass(frozen=True)
class _Call:
    """One call, ready to run: the (request-scoped) fusion, the request, the fallback name."""

    fusion: Fusion
    request: ChatRequest
    label: str


class ChatFusion(BaseChatModel, FusionOptions):
    """A chat model that samples N candidate answers and fuses them into one.

    Drop it in wherever a chain uses ``ChatOpenAI``: every answer is sampled N times (from one
    model, or from a panel) and aggregated by a fusor LLM (Fusion-of-N) or by Best-of-N, a
    majority vote, universal self-consistency or Mixture-of-Agents. ``invoke``, ``stream``,
    ``batch``, their async forms, tools, structured output and callbacks work as usual.

    Where the candidates come from (pick one way):

    * ``base_url`` + ``model``: one OpenAI-compatible endpoint sampled ``n`` times
      (test-time scaling), e.g. ``ChatFusion(base_url="http://127.0.0.1:8000/v1",
      model="qwen", n=5)``.
    * ``endpoints=[...]``: a panel of endpoints, each a model name served at ``base_url``, a
      dict of :class:`~polyfuse.OpenAIEndpoint` settings (``{"base_url": ..., "model": ...}``)
      or a polyfuse backend.
    * ``candidates=[...]``: LangChain chat models you already configured (``ChatOpenAI``,
      ``ChatOllama``, any ``BaseChatModel``); may be combined with ``endpoints``. Their calls
      appear as child runs of the ``ChatFusion`` run in callbacks and tracing.
    * ``pool=``: a ready :class:`polyfuse.Pool`.

    ``n`` is the number of samples per member: by default 3 for a single model and 1 per member
    for a panel. The fusor (also the judge of ``best-of-n``, the selector of ``usc`` and the
    aggregator of ``moa``) is ``fusor`` if given (a LangChain chat model, a polyfuse backend, a
    model name served at ``base_url`` or a dict of endpoint settings), else the ``base_url`` +
    ``model`` endpoint if there is one, else the first member.

    The fusion settings — ``n``, ``strategy``, ``fusor_params``, ``judge_params`` (default:
    ``fusor_params``), ``quorum``, ``deadline``, ``min_candidates``, ``stream_candidates``,
    ``vote_extract``, ``moa_layers``, ``params`` — are those of :class:`polyfuse.FusionOptions`
    (the same names as in a presets file); :attr:`spec` is the resulting
    :class:`polyfuse.FusionSpec`. A misspelt setting raises
    :class:`polyfuse.InvalidRequestError` naming the closest valid one.

    Sampling parameters (``temperature``, ``max_tokens``, ``top_p``, ``seed``, ``stop``,
    ``model_kwargs``, ``params``) go to every candidate and, unless ``fusor_params`` overrides
    them, to the fusor. ``timeout`` (seconds per request attempt, or an ``httpx.Timeout``-like
    object; see :mod:`polyfuse.timeouts`), ``max_retries``, ``api_key`` and
    ``max_concurrency`` configure the endpoints ChatFusion builds; LangChain candidates keep
    their own.

    ``usage_metadata`` is the sum over every call made (candidates, fusor, judge);
    ``response_metadata`` holds ``model_name`` (the model that wrote the final answer),
    ``finish_reason``, ``model_provider="polyfuse"`` and ``fusion``: every candidate's model,
    text, usage, latency and error, and how they were aggregated.

    ``n``, ``strategy``, ``fusor`` (and any other field) can be made runtime-configurable with
    ``configurable_fields``.
    """

    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=()
    )

    model: str | None = Field(default=None, alias="model_name")
    """The model served at ``base_url`` (sampled ``n`` times unless a panel is given)."""
    base_url: str | None = Field(
        default_factory=from_env("POLYFUSE_BASE_URL", default=None), alias="openai_api_base"
    )
    """Root of an OpenAI-compatible API, e.g. ``http://127.0.0.1:8000/v1`` (env
    ``POLYFUSE_BASE_URL``)."""
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("POLYFUSE_API_KEY", default=None)
    )
    """Bearer key for ``base_url`` (env ``POLYFUSE_API_KEY``); never sent to other hosts."""
    endpoints: Annotated[list[EndpointRef] | None, SkipValidation] = None
    """A panel: model names at ``base_url``, dicts of endpoint settings, or polyfuse backends."""
    candidates: Annotated[list[CandidateModel] | None, SkipValidation] = None
    """A panel of LangChain chat models (or polyfuse backends)."""
    pool: Annotated[Pool | None, SkipValidation] = None
    """A ready :class:`polyfuse.Pool` (instead of the options above)."""
    fusor: Annotated[FusorRef | None, SkipValidation] = None
    """The model that aggregates (see the class docstring for the default)."""
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other sampling parameters sent with every call (polyfuse ``SamplingParams`` names, with
    vendor fields under ``extra_body``)."""
    timeout: Annotated[float | TimeoutLike | None, SkipValidation] = Field(
        default=None, alias="request_timeout"
    )
    """Seconds one request attempt to an endpoint may take, end to end, or an
    ``httpx.Timeout``-like object with per-phase limits (see :mod:`polyfuse.timeouts`)."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of a failed endpoint request (429, 5xx, connection errors)."""
    max_concurrency: int = Field(default=64, ge=1)
    """Requests in flight at once per endpoint."""
    supports_n: bool | None = None
    """Whether the endpoints honour ``n`` (``None``: learn it on the first call)."""
    streaming: bool = False
    """Route ``invoke`` through streaming (the fused answer is streamed either way in
    ``stream``)."""

    _plan: FusionPlan = PrivateAttr()
    _overrides: dict[str, FusionPlan] = PrivateAttr(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        """Validate the settings and build the fusion; bad settings raise
        :class:`polyfuse.InvalidRequestError` here, not at the first call."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidRequestError.from_validation_error(exc, "ChatFusion settings") from None
        self._plan = self._build_plan(self.model)

    # ------------------------------------------------------------------ assembly

    def _endpoint_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "max_retries": self.max_retries,
            "max_concurrency": self.max_concurrency,
            **endpoint_timeouts(self.timeout),
        }
        if self.supports_n is not None:
            settings["supports_n"] = self.supports_n
        return settings

    def _endpoint(self, spec: Any, *, where: str) -> Backend:
        """An endpoint from a model name at ``base_url``, a settings dict, or a backend."""
        settings = self._endpoint_settings()
        if isinstance(spec, str):
            if not self.base_url:
                raise InvalidRequestError(
                    f"{where} is the model name {spec!r}, but no base_url is set; pass "
                    "base_url= or give a dict {'base_url': ..., 'model': ...}"
                )
            if self.api_key is not None:
                settings["api_key"] = self.api_key
            return shared_endpoint(self.base_url, spec, **settings)
        if isinstance(spec, Mapping):
            spec = dict(spec)
            base_url = spec.pop("base_url", None) or self.base_url
            model = spec.pop("model", None)
            if not base_url or not model:
                raise InvalidRequestError(
                    f"{where} needs 'base_url' and 'model' (got keys {sorted(spec)})"
                )
            if self.api_key is not None and base_url == self.base_url:
                settings["api_key"] = self.api_key
            settings.update(spec)
            return shared_endpoint(base_url, model, **settings)
        if isinstance(spec, BaseChatModel):
            raise InvalidRequestError(
                f"{where} is a LangChain chat model; put LangChain models in candidates=[...]"
            )
        return member_backend(spec, where=where)

    def _members(self, default: Backend | None) -> list[PoolMember] | list[Backend]:
        if self.pool is not None:
            if self.candidates is not None or self.endpoints is not None:
                raise InvalidRequestError("pass either pool= or candidates=/endpoints=, not both")
            if not isinstance(self.pool, Pool):
                raise InvalidRequestError(
                    f"pool must be a polyfuse Pool (got {type(self.pool).__name__}); use "
                    "Pool.repeat(backend, n) or Pool.panel([...]), or pass candidates=[...]"
                )
            if self.n is not None:
                raise InvalidRequestError(
                    "n does not apply to a ready pool; set the samples on the Pool itself"
                )
            return list(self.pool.members)
        if self.candidates is not None and not self.candidates:
            raise InvalidRequestError(
                "candidates is empty; pass at least one chat model, e.g. "
                "candidates=[ChatOpenAI(model=...), ...]"
            )
        if self.endpoints is not None and not self.endpoints:
            raise InvalidRequestError("endpoints is empty; pass at least one endpoint")
        backends = [
            member_backend(item, where=f"candidates[{i}]")
            for i, item in enumerate(self.candidates or ())
        ]
        backends.extend(
            self._endpoint(item, where=f"endpoints[{i}]")
            for i, item in enumerate(self.endpoints or ())
        )
        if not backends:
            if default is None:
                raise InvalidRequestError(
                    "ChatFusion has no candidates: pass base_url= and model= (one model sampled "
                    "n times), endpoints=[...], candidates=[chat models] or pool=Pool(...)"
                )
            backends = [default]
        return backends

    def _fusor_backend(self, default: Backend | None) -> Backend | None:
        if self.fusor is None:
            return default
        if isinstance(self.fusor, BaseChatModel):
            return member_backend(self.fusor, where="fusor")
        return self._endpoint(self.fusor, where="fusor")

    def _build_plan(self, model: str | None) -> FusionPlan:
        if model is not None and not self.base_url:
            raise InvalidRequestError(
                f"model={model!r} names a model served at base_url, but base_url is not set;"
                " pass base_url='http://host:port/v1' (or set POLYFUSE_BASE_URL)"
            )
        default: OpenAIEndpoint | None = None
        if self.base_url and model:
            settings = self._endpoint_settings()
            if self.api_key is not None:
                settings["api_key"] = self.api_key
            default = shared_endpoint(self.base_url, model, **settings)
        spec = self._spec(self._members(default), self._fusor_backend(default))
        return FusionPlan.build(spec, template=self.pool)

    def _spec(self, members: Sequence[PoolMember | Backend], fusor: Backend | None) -> FusionSpec:
        options = self.fusion_options()
        if not self.judge_params:
            options["judge_params"] = self.fusor_params
        return FusionSpec(**options, pool=list(members), fusor=fusor)

    @property
    def spec(self) -> FusionSpec:
        """The :class:`polyfuse.FusionSpec` this model runs (pool, fusor and every option)."""
        return self._plan.spec

    def _plan_for(self, model: str | None) -> FusionPlan:
        """The plan for a per-call ``model=`` override (cached per model name)."""
        if model is None or model == self.model:
            return self._plan
        if not self.base_url or not self.model:
            raise InvalidRequestError(
                f"model={model!r} per call replaces the model ChatFusion samples at base_url, "
                "but this ChatFusion was not built from base_url= and model="
            )
        plan = self._overrides.get(model)
        if plan is None:
            plan = self._build_plan(model)
            if len(self._overrides) >= _MAX_OVERRIDES:
                self._overrides.pop(next(iter(self._overrides)))
            self._overrides[model] = plan
        return plan

    @property
    def label(self) -> str:
        """The name this model reports when nothing more specific is known."""
        if self.model:
            return self.model
        models = dict.fromkeys(backend.model for backend in self._plan.pool.backends)
        return "+".join(models)

    # ------------------------------------------------------------------ LangChain hooks

    @property
    def _llm_type(self) -> str:
        return "polyfuse-fusion"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.label,
            "strategy": self.strategy,
            "n": self._plan.pool.size,
            "fusor": self._plan.fusor.name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="polyfuse",
            ls_model_name=kwargs.get("model") or self.label,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stop = stop or self.stop
        if stop:
            params["ls_stop"] = stop
        return params

    def _sampling_params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.model_kwargs)
        for name in ("temperature", "max_tokens", "top_p", "seed"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.stop:
            params["stop"] = list(self.stop)
        if stop:
            params["stop"] = list(stop)
        params.update(kwargs)
        return params

    def _call(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> _Call:
        kwargs = dict(kwargs)
        kwargs.pop("stream", None)
        model = kwargs.pop("model", None)
        plan = self._plan_for(model)
        request = ChatRequest.build(
            to_openai_messages(messages), **self._sampling_params(stop, kwargs)
        )
        if run_manager is not None:
            callbacks: Callbacks = _child_callbacks(run_manager)
        else:
            # LangChain's stream paths do not hand _stream its run manager; report child runs
            # to the enclosing runnable (chain step, graph node) instead.
            ambient = var_child_runnable_config.get()
            callbacks = ambient.get("callbacks") if ambient else None
        return _Call(plan.fusion_for(callbacks), request, model or self.label)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, stop, run_manager, kwargs)
        listener = _listener.get()
        if listener is None:
            return _chat_result(call.fusion.run(call.request), call.label)
        return _chat_result(_listened(call.fusion.stream(call.request), listener), call.label)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, stop, run_manager, kwargs)
        listener = _listener.get()
        if listener is None:
            return _chat_result(await call.fusion.arun(call.request), call.label)
        result = await _alistened(call.fusion.astream(call.request), listener)
        return _chat_result(result, call.label)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._call(messages, stop, run_manager, kwargs)
        chunks = ChunkStream(fallback_model=call.label)
        listener = _listener.get()
        events = call.fusion.stream(call.request)
        try:
            for event in events:
                if listener is not None:
                    listener(event)
                chunk = chunks.chunk(event)
                if chunk is not None:
                    yield chunk
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._call(messages, stop, run_manager, kwargs)
        chunks = ChunkStream(fallback_model=call.label)
        listener = _listener.get()
        events = call.fusion.astream(call.request)
        try:
            async for event in events:
                if listener is not None:
                    listener(event)
                chunk = chunks.chunk(event)
                if chunk is not None:
                    yield chunk
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    # ------------------------------------------------------------------ tools and structure

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, functions, pydantic classes or OpenAI tool dicts).

        ``tool_choice``: ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True`` (must call
        a tool), a tool's name, or an OpenAI ``tool_choice`` dict. Candidates see the tools;
        the fusor sees them too and answers with the tool call set that best serves the request.
        """
        self._check_tool_support()
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        names = [tool["function"]["name"] for tool in formatted]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice(tool_choice, names)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def _check_tool_support(self) -> None:
        """Fail at bind time, not mid-call, when a LangChain member cannot call tools."""
        backends = [m.backend for m in self._plan.members]
        if self.strategy != "vote":  # every other strategy calls the fusor with the tools
            backends.append(self._plan.fusor)
        for backend in backends:
            if isinstance(backend, LangChainBackend) and not backend.supports_tools:
                raise InvalidRequestError(
                    f"{backend.name} ({type(backend.chat_model).__name__}) does not implement "
                    "bind_tools, so it cannot take part in tool calling; use members that do"
                )

    def with_structured_output(
        self,
        schema: Mapping[str, Any] | type | None = None,
        *,
        method: StructuredMethod = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers parsed into ``schema`` (a pydantic class, TypedDict or JSON schema).

        ``method``: ``"function_calling"`` (a forced tool call; the default, widest support),
        ``"json_schema"`` (``response_format`` with the schema) or ``"json_mode"`` (any JSON
        object; describe the keys in the prompt). With ``include_raw=True`` the result is
        ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``.
        """
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        return structured_output(
            self, schema, method=method, include_raw=include_raw, strict=strict
        )


def _child_callbacks(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun,
) -> BaseCallbackManager:
    """Callbacks for runs nested under ``run_manager``'s run.

    LLM run managers have no ``get_child`` (models are usually leaves); a fusion is not, so its
    LangChain members' runs are made children of the ChatFusion run the same way chains do it.
    """
    manager_cls = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    manager = manager_cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def _tool_choice(choice: dict[str, Any] | str | bool, names: Sequence[str]) -> dict[str, Any] | str:
    if isinstance(choice, dict):
        return choice
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return choice
    if isinstance(choice, str) and choice in names:
        return {"type": "function", "function": {"name": choice}}
    raise InvalidRequestError(
        f"tool_choice={choice!r} is not a bound tool; use 'auto', 'none', 'any', 'required' "
        f"or one of {', '.join(names) or 'the bound tools'}"
    )


def _listened(events: Iterator[FusionEvent], listener: FusionListener) -> FusionResult:
    """Run a fusion stream to its end, telling ``listener`` every event; return the result."""
    last: FusionEvent | None = None
    try:
        for last in events:
            listener(last)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return _result_of(last)


async def _alistened(events: AsyncIterator[FusionEvent], listener: FusionListener) -> FusionResult:
    """Async :func:`_listened`."""
    last: FusionEvent | None = None
    try:
        async for last in events:
            listener(last)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    return _result_of(last)


def _result_of(last: FusionEvent | None) -> FusionResult:
    """The result a fusion stream ends with (``Fusion.astream`` always ends with one)."""
    if not isinstance(last, FusionDone):
        raise AggregationError("the fusion stream ended without a result; retry the call")
    return last.result


def _chat_result(result: FusionResult, label: str) -> ChatResult:
    message = message_from_result(result, fallback_model=label)
    return ChatResult(generations=[ChatGeneration(message=message)])
