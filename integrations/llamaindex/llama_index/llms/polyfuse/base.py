"""``FusionLLM``: a polyfuse fusion as a chat-native LlamaIndex LLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from polyfuse import (
    Aggregator,
    Backend,
    ChatRequest,
    Fusion,
    FusionOptions,
    FusionResult,
    FusionSpec,
    InvalidRequestError,
    QuorumPolicy,
)
from polyfuse.spec import check_names
from polyfuse.timeouts import check_total

from ._convert import (
    sampling_params,
    to_chat_message,
    to_polyfuse_messages,
    tool_selections,
    usage_kwargs,
)
from ._stream import FusionEventConsumer
from .backend import as_backend
from .events import dispatch_result_events

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["FusionLLM"]

dispatcher = get_dispatcher(__name__)


class FusionLLM(FunctionCallingLLM):
    """A polyfuse :class:`~polyfuse.Fusion` as a LlamaIndex LLM.

    Every chat call samples the fusion's pool and aggregates the candidates (Fusion-of-N by
    default) into one answer. The chat methods are native (``chat``, ``achat``,
    ``stream_chat``, ``astream_chat``); the completion methods wrap them. It is a
    :class:`~llama_index.core.llms.function_calling.FunctionCallingLLM`: tools reach every
    candidate and the fusor, and a fused tool call comes back as a ``ToolCallBlock``, so it
    works with ``predict_and_call``, ``structured_predict`` and ``FunctionAgent``.

    Args:
        fusion: the engine to run (its pool, aggregator and policy), or a
            :class:`~polyfuse.FusionSpec` to build it from.
        model_name: reported in :attr:`metadata` (default: ``polyfuse:<method>(<models>)``).
        context_window: the smallest context window among the pool's models (default 3900).
        num_output: tokens reserved for the answer (default 256).
        function_calling: report ``is_function_calling_model`` (turn off when the pool's
            models cannot call tools).
        params: default sampling parameters for every call (``temperature``, ``max_tokens``,
            ...); keyword arguments of a call override them.
        timeout: the most seconds one call (the whole fusion) may take; see
            :mod:`polyfuse.timeouts`. A call's ``timeout=`` keyword overrides it.

    ``ChatResponse.raw`` is ``{"usage": {...}, "fusion": FusionResult}``: the summed usage of
    every call (what LlamaIndex's token counter reads) and the full result, with every
    candidate. ``additional_kwargs`` holds the same token counts.

    Example::

        from polyfuse import Fusion, OpenAIEndpoint, Pool
        from llama_index.core import Settings
        from llama_index.llms.polyfuse import FusionLLM

        endpoint = OpenAIEndpoint("http://127.0.0.1:8000/v1", model="qwen")
        Settings.llm = FusionLLM(Fusion(Pool.repeat(endpoint, 5)), params={"temperature": 0.8})
        print(Settings.llm.complete("Why is the sky blue?"))
    """

    model_name: str = Field(default="", description="The model name reported in metadata.")
    context_window: int = Field(
        default=DEFAULT_CONTEXT_WINDOW, gt=0, description="Context window of the pool's models."
    )
    num_output: int = Field(
        default=DEFAULT_NUM_OUTPUTS, gt=0, description="Tokens reserved for the answer."
    )
    function_calling: bool = Field(
        default=True, description="Whether to report the LLM as function calling."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Default sampling parameters for every call."
    )
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds one call (the whole fusion) may take."
    )

    _fusion: Fusion = PrivateAttr()

    def __init__(
        self,
        fusion: Fusion | FusionSpec,
        *,
        model_name: str | None = None,
        context_window: int = DEFAULT_CONTEXT_WINDOW,
        num_output: int = DEFAULT_NUM_OUTPUTS,
        function_calling: bool = True,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        check_names(kwargs, _EXTRA_FIELDS, where="FusionLLM settings")
        if isinstance(fusion, FusionSpec):
            fusion = fusion.build()
        if not isinstance(fusion, Fusion):
            raise InvalidRequestError(
                f"FusionLLM runs a polyfuse Fusion (got {type(fusion).__name__}); build one "
                "with Fusion(Pool.repeat(backend, n)) or use FusionLLM.from_models([...])"
            )
        sampling_params(params)  # validate early: a typo fails here, not at the first call
        super().__init__(
            model_name=model_name or _describe(fusion),
            context_window=context_window,
            num_output=num_output,
            function_calling=function_calling,
            params=dict(params or {}),
            timeout=None if timeout is None else check_total(timeout),
            callback_manager=callback_manager,
            **kwargs,
        )
        self._fusion = fusion

    @classmethod
    def from_models(
        cls,
        models: Sequence[LLM | Backend],
        *,
        samples: int | None = None,
        fusor: LLM | Backend | None = None,
        aggregator: Aggregator | None = None,
        policy: QuorumPolicy | None = None,
        **kwargs: Any,
    ) -> FusionLLM:
        """Fuse LlamaIndex LLMs and/or polyfuse backends.

        One model is sampled ``samples`` times (default 3); several form a panel, each sampled
        ``samples`` times (default 1). The fusor defaults to the first model. Keyword arguments
        named like a :class:`~polyfuse.FusionOptions` field (``strategy``, ``quorum``,
        ``deadline``, ``fusor_params``, ...) shape the fusion, as in a presets file;
        ``aggregator`` and ``policy`` replace the ones they would build. Other keyword
        arguments go to :class:`FusionLLM`; the context window defaults to the smallest one the
        LlamaIndex models report.
        """
        if not models:
            raise InvalidRequestError("from_models needs at least one model")
        check_names(kwargs, {*_SPEC_OPTIONS, *cls.model_fields}, where="FusionLLM settings")
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in _SPEC_OPTIONS}
        if samples is not None:
            options["n"] = samples
        spec = FusionSpec(
            **options,
            pool=[as_backend(m) for m in models],
            fusor=as_backend(fusor) if fusor is not None else None,
        )
        fusion = spec.build()
        if aggregator is not None or policy is not None:
            fusion = Fusion(
                fusion.pool,
                aggregator or fusion.aggregator,
                policy or fusion.policy,
                params=fusion.params,
            )
        windows = [m.metadata.context_window for m in (*models, fusor) if isinstance(m, LLM)]
        if windows and "context_window" not in kwargs:
            kwargs["context_window"] = min(windows)
        return cls(fusion, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "polyfuse_fusion_llm"

    @property
    def fusion(self) -> Fusion:
        """The fusion engine this LLM runs."""
        return self._fusion

    @property
    def metadata(self) -> LLMMetadata:
        """LLM metadata: chat-native, function calling unless turned off."""
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=True,
            is_function_calling_model=self.function_calling,
            model_name=self.model_name,
            system_role=MessageRole.SYSTEM,
        )

    # ------------------------------------------------------------------ chat (native)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Fuse an answer to ``messages``."""
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Fuse an answer to ``messages``."""
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Fuse an answer, streaming the fused text; the last chunk carries tool calls and usage."""
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Fuse an answer, streaming the fused text; the last chunk carries tool calls and usage."""
        return await self._astream_chat(messages, **kwargs)

    # ------------------------------------------------------------------ completion (derived)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Fuse an answer to ``prompt`` (sent as one user message)."""
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Fuse an answer to ``prompt`` (sent as one user message)."""
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Fuse an answer to ``prompt``, streaming the fused text."""
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Fuse an answer to ``prompt``, streaming the fused text."""
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)

    # ------------------------------------------------------------------ engine

    def _request(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatRequest:
        return ChatRequest.build(
            to_polyfuse_messages(messages), sampling_params(self.params, kwargs)
        )

    def _timeout(self, kwargs: dict[str, Any]) -> float | None:
        timeout = kwargs.pop("timeout", None)
        return self.timeout if timeout is None else check_total(timeout)

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        timeout = self._timeout(kwargs)
        result = self._fusion.run(self._request(messages, kwargs), timeout=timeout)
        dispatch_result_events(dispatcher, result)
        return _response(result)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        timeout = self._timeout(kwargs)
        result = await self._fusion.arun(self._request(messages, kwargs), timeout=timeout)
        dispatch_result_events(dispatcher, result)
        return _response(result)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        timeout = self._timeout(kwargs)
        request = self._request(messages, kwargs)

        def gen() -> ChatResponseGen:
            consumer = FusionEventConsumer(dispatcher)
            text = ""
            events = self._fusion.stream(request, timeout=timeout)
            try:
                for event in events:
                    delta = consumer.feed(event)
                    if delta:
                        text += delta
                        yield _chunk(text, delta)
            finally:
                events.close()  # type: ignore[attr-defined]
            yield _response(consumer.final(), delta="")

        return gen()

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        timeout = self._timeout(kwargs)
        request = self._request(messages, kwargs)

        async def gen() -> ChatResponseAsyncGen:
            consumer = FusionEventConsumer(dispatcher)
            text = ""
            events = self._fusion.astream(request, timeout=timeout)
            try:
                async for event in events:
                    delta = consumer.feed(event)
                    if delta:
                        text += delta
                        yield _chunk(text, delta)
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            yield _response(consumer.final(), delta="")

        return gen()

    # ------------------------------------------------------------------ function calling

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The ``chat`` arguments that offer ``tools`` (OpenAI tool specs) to every call."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        prepared: dict[str, Any] = {"messages": messages, **kwargs}
        specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
        if specs:
            prepared["tools"] = specs
            prepared["tool_choice"] = _tool_choice(tool_choice, tool_required)
            prepared["parallel_tool_calls"] = allow_parallel_tool_calls
        return prepared

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls were allowed."""
        if not allow_parallel_tool_calls:
            seen = False
            kept = []
            for block in response.message.blocks:
                if block.block_type == "tool_call":
                    if seen:
                        continue
                    seen = True
                kept.append(block)
            response.message.blocks = kept
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """The fused answer's tool calls.

        Raises:
            InvalidRequestError: there is none and ``error_on_no_tool_call`` is set.
        """
        selections = tool_selections(response.message)
        if not selections and error_on_no_tool_call:
            raise InvalidRequestError(
                "the fused answer has no tool call; pass tool_required=True to force one, or "
                "error_on_no_tool_call=False to accept a text answer"
            )
        return selections


_SPEC_OPTIONS = frozenset(FusionOptions.model_fields) - {"params"}
"""``from_models`` keywords that shape the fusion (``params`` stays FusionLLM's own)."""

_EXTRA_FIELDS = frozenset(LLM.model_fields)
"""Keyword arguments FusionLLM passes on to LlamaIndex's ``LLM`` (callbacks, prompts, ...)."""


def _tool_choice(choice: str | dict[str, Any] | None, required: bool) -> str | dict[str, Any]:
    if isinstance(choice, dict):
        return choice
    if choice is None:
        return "required" if required else "auto"
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _describe(fusion: Fusion) -> str:
    models = ",".join(dict.fromkeys(backend.model for backend in fusion.pool.backends))
    return f"polyfuse:{fusion.aggregator.method}({models})"


def _chunk(text: str, delta: str) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)


def _response(result: FusionResult, delta: str | None = None) -> ChatResponse:
    usage = usage_kwargs(result.usage.total)
    return ChatResponse(
        message=to_chat_message(result.message.content, result.message.tool_calls),
        delta=delta,
        raw={"usage": usage, "fusion": result},
        additional_kwargs=dict(usage),
    )
