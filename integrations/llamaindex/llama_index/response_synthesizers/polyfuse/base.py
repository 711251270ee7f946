"""``FusionSynthesizer``: RAG answers fused from several drafts over the retrieved sources."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.synthesis import (
    GetResponseEndEvent,
    GetResponseStartEvent,
    SynthesizeEndEvent,
    SynthesizeStartEvent,
)
from llama_index.core.llms import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, QueryType
from llama_index.core.settings import Settings
from llama_index.core.types import RESPONSE_TEXT_TYPE
from pydantic import BaseModel, ValidationError

from llama_index.llms.polyfuse import (
    FusionEventConsumer,
    FusionLLM,
    as_backend,
    sampling_params,
)
from llama_index.llms.polyfuse.events import dispatch_result_events
from polyfuse import (
    AggregationError,
    Backend,
    Fusion,
    FusionOptions,
    FusionResult,
    InvalidRequestError,
    Pool,
    QuorumPolicy,
)

from .details import METADATA_KEY, record_details
from .drafting import Drafter, DraftPlan, GroundedFuse, plan_drafts
from .prompts import (
    DEFAULT_DRAFT_PROMPT,
    DEFAULT_FUSE_PROMPT,
    DRAFT_PROMPT_VARS,
    FUSE_PROMPT_VARS,
    check_prompt,
)
from .sources import ContextMode, Source

__all__ = ["FusionSynthesizer"]

dispatcher = get_dispatcher(__name__)

Model = LLM | Backend
_MODES = ("full", "partition", "shuffle")


@dataclass
class _Run:
    """One synthesis: its fusion, its plan, and the details it fills in when done."""

    fusion: Fusion
    plan: DraftPlan
    aggregator: GroundedFuse
    num_sources: int
    details: dict[str, Any] = field(default_factory=dict)


class FusionSynthesizer(BaseSynthesizer):
    """Answers from several drafts over the retrieved nodes, fused into one cited answer.

    Drafting models answer the query from numbered sources (the retrieved nodes, ``[1]`` is
    ``source_nodes[0]``); a fusor then treats the drafts as competing answers, keeps what the
    sources support with its citations, and drops the rest. Drafts are sampled and fused by
    polyfuse (one :class:`~polyfuse.Pool` per synthesis, polyfuse's ``Fuse`` aggregator), so
    quorum, deadlines, retries and fallbacks follow ``policy``.

    Draft strategies:

    * **samples**: ``FusionSynthesizer(llm=m, num_drafts=5)``: five samples of one model
      (set a temperature in ``draft_params`` for diverse drafts);
    * **panel**: ``FusionSynthesizer(drafters=[a, b, c], fusor=f)``: one draft per model
      (``num_drafts`` larger than the panel cycles through it);
    * **context slices**: ``context="partition"`` gives each draft a different slice of the
      sources (so more context is used than one window holds), ``context="shuffle"`` gives
      each draft all sources in a different order (against lost-in-the-middle).

    Args:
        llm: drafts and fuses unless ``drafters`` / ``fusor`` say otherwise; a LlamaIndex LLM
            or a polyfuse backend. Defaults to ``Settings.llm`` when no drafter is given.
        drafters: the drafting models (a panel).
        fusor: the model that fuses (default: ``llm``, else the first drafter).
        num_drafts: how many drafts (default: the panel's size, or 3 for one model).
        context: how drafts see the sources: ``"full"``, ``"partition"`` or ``"shuffle"``.
        policy: polyfuse's quorum/deadline/fallback policy for the drafts and the fusor.
        draft_params: sampling parameters of the drafts (``temperature``, ``max_tokens``, ...).
        fuse_params: sampling parameters of the fusor, on top of ``draft_params``.
        draft_prompt / fuse_prompt: replace the default prompts (see :mod:`.prompts`).
        context_window: overrides every model's context window (default: the LLM's metadata,
            3900 for a polyfuse backend).
        num_output: tokens reserved for each answer (default: ``max_tokens``, else the LLM's
            metadata, else 256).
        tokenizer: counts tokens for fitting prompts (default: ``Settings.tokenizer``).
        streaming: return ``StreamingResponse`` / ``AsyncStreamingResponse`` of the fused text.
        output_cls: a pydantic model: the fusor answers in its JSON schema and the response is
            a ``PydanticResponse`` (not with ``streaming``).
        empty_response: the answer when nothing was retrieved.
        callback_manager: LlamaIndex callback manager.
        options: a :class:`~polyfuse.FusionOptions` (or :class:`~polyfuse.FusionSpec`) to take
            the defaults from, with the names of a presets file: ``n`` → ``num_drafts``,
            ``params`` → ``draft_params``, ``fusor_params`` → ``fuse_params``, ``quorum``/
            ``deadline``/``min_candidates``/``stream_candidates`` → ``policy``. The
            arguments above win over it. Its strategy must be ``fuse`` (drafts are always fused).

    ``Response.metadata["polyfuse"]`` holds the drafts, which sources each saw and cited, how
    much each contributed, the answer's citations, usage by role and the full result (see
    :func:`~.details.record_details`; read it with :func:`fusion_details`).
    """

    def __init__(
        self,
        llm: Model | None = None,
        *,
        drafters: Sequence[Model] | None = None,
        fusor: Model | None = None,
        num_drafts: int | None = None,
        context: ContextMode = "full",
        policy: QuorumPolicy | None = None,
        draft_params: Mapping[str, Any] | None = None,
        fuse_params: Mapping[str, Any] | None = None,
        draft_prompt: BasePromptTemplate | None = None,
        fuse_prompt: BasePromptTemplate | None = None,
        context_window: int | None = None,
        num_output: int | None = None,
        tokenizer: Callable[[str], Sequence[Any]] | None = None,
        streaming: bool = False,
        output_cls: type[BaseModel] | None = None,
        empty_response: str | None = None,
        callback_manager: CallbackManager | None = None,
        options: FusionOptions | None = None,
    ) -> None:
        if options is not None:
            if options.strategy != "fuse":
                raise InvalidRequestError(
                    f"FusionSynthesizer fuses its drafts; options.strategy={options.strategy!r} "
                    "does not apply (use strategy='fuse')"
                )
            num_drafts = num_drafts if num_drafts is not None else options.n
            draft_params = draft_params if draft_params is not None else options.params
            fuse_params = fuse_params if fuse_params is not None else options.fusor_params
            policy = policy or options.policy()
        if drafters:
            models: list[Model] = list(drafters)
        else:
            llm = llm if llm is not None else Settings.llm  # raises if none can be built
            models = [llm]
        fusor_model = fusor if fusor is not None else (llm if llm is not None else models[0])
        if context not in _MODES:
            raise InvalidRequestError(
                f"context must be one of {', '.join(_MODES)} (got {context!r})"
            )
        if streaming and output_cls is not None:
            raise InvalidRequestError(
                "output_cls answers are parsed whole; use streaming=False with output_cls"
            )
        self._draft_params = sampling_params(draft_params)
        fuse = sampling_params(self._draft_params.model_dump(exclude_unset=True), fuse_params)
        self._fuse_params = sampling_params(fuse_params, _schema_format(output_cls))
        self._drafters = [
            _drafter(m, context_window, num_output, self._draft_params.max_tokens) for m in models
        ]
        fusor_drafter = _drafter(fusor_model, context_window, num_output, fuse.max_tokens)
        self._fusor = fusor_drafter
        self._num_drafts = num_drafts if num_drafts is not None else _default_drafts(models)
        if self._num_drafts < 1:
            raise InvalidRequestError(f"num_drafts must be >= 1 (got {self._num_drafts})")
        self._context: ContextMode = context
        self._policy = policy or QuorumPolicy()
        self._draft_prompt = draft_prompt or DEFAULT_DRAFT_PROMPT
        self._fuse_prompt = fuse_prompt or DEFAULT_FUSE_PROMPT
        check_prompt("draft_prompt", self._draft_prompt, DRAFT_PROMPT_VARS)
        check_prompt("fuse_prompt", self._fuse_prompt, FUSE_PROMPT_VARS)
        encode = tokenizer or Settings.tokenizer
        self._count: Callable[[str], int] = lambda text: len(encode(text))
        super().__init__(
            llm=_as_llm(fusor_model, fusor_drafter),
            callback_manager=callback_manager,
            streaming=streaming,
            output_cls=output_cls,
            empty_response=empty_response,
        )

    @property
    def llm(self) -> LLM:
        """The fusor as a LlamaIndex LLM (pass it as ``llm=`` to ``index.as_query_engine`` so
        LlamaIndex does not resolve ``Settings.llm``)."""
        return self._llm

    # ------------------------------------------------------------------ prompts

    def _get_prompts(self) -> PromptDictType:
        """The draft and fuse prompts."""
        return {"draft_prompt": self._draft_prompt, "fuse_prompt": self._fuse_prompt}

    def _update_prompts(self, prompts_dict: PromptDictType) -> None:
        """Replace the draft and/or fuse prompt (their variables are checked)."""
        if "draft_prompt" in prompts_dict:
            check_prompt("draft_prompt", prompts_dict["draft_prompt"], DRAFT_PROMPT_VARS)
            self._draft_prompt = prompts_dict["draft_prompt"]
        if "fuse_prompt" in prompts_dict:
            check_prompt("fuse_prompt", prompts_dict["fuse_prompt"], FUSE_PROMPT_VARS)
            self._fuse_prompt = prompts_dict["fuse_prompt"]

    # ------------------------------------------------------------------ BaseSynthesizer API

    @dispatcher.span
    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """The fused answer to ``query_str`` over ``text_chunks`` (source ``n`` is chunk
        ``n - 1``): text, a generator of text deltas when streaming, or an ``output_cls``
        instance; ``empty_response`` when there is no chunk. Keyword arguments override
        ``draft_params`` for this call."""
        dispatcher.event(GetResponseStartEvent(query_str=query_str, text_chunks=list(text_chunks)))
        if not text_chunks:
            answer: RESPONSE_TEXT_TYPE = (
                self._empty_response_generator() if self._streaming else self._empty_response
            )
        else:
            answer = self._answer(self._prepare(query_str, text_chunks, response_kwargs))
        dispatcher.event(GetResponseEndEvent())
        return answer

    @dispatcher.span
    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Async :meth:`get_response` (an async generator of deltas when streaming)."""
        dispatcher.event(GetResponseStartEvent(query_str=query_str, text_chunks=list(text_chunks)))
        if not text_chunks:
            answer: RESPONSE_TEXT_TYPE = (
                self._empty_response_agenerator() if self._streaming else self._empty_response
            )
        else:
            answer = await self._aanswer(self._prepare(query_str, text_chunks, response_kwargs))
        dispatcher.event(GetResponseEndEvent())
        return answer

    @dispatcher.span
    def synthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Answer ``query`` from ``nodes``, with the fusion details in the response metadata.

        With no nodes, this is LlamaIndex's empty response (``empty_response``).
        """
        if not nodes:
            return super().synthesize(query, nodes, additional_source_nodes, **response_kwargs)
        bundle = QueryBundle(query_str=query) if isinstance(query, str) else query
        dispatcher.event(SynthesizeStartEvent(query=bundle))
        with self._callback_manager.event(
            CBEventType.SYNTHESIZE, payload={EventPayload.QUERY_STR: bundle.query_str}
        ) as event:
            run = self._prepare(bundle.query_str, _texts(nodes), response_kwargs)
            answer = self._answer(run)
            response = self._respond(answer, run, nodes, additional_source_nodes)
            event.on_end(payload={EventPayload.RESPONSE: response})
        dispatcher.event(SynthesizeEndEvent(query=bundle, response=response))
        return response

    @dispatcher.span
    async def asynthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Async :meth:`synthesize`."""
        if not nodes:
            return await super().asynthesize(
                query, nodes, additional_source_nodes, **response_kwargs
            )
        bundle = QueryBundle(query_str=query) if isinstance(query, str) else query
        dispatcher.event(SynthesizeStartEvent(query=bundle))
        with self._callback_manager.event(
            CBEventType.SYNTHESIZE, payload={EventPayload.QUERY_STR: bundle.query_str}
        ) as event:
            run = self._prepare(bundle.query_str, _texts(nodes), response_kwargs)
            answer = await self._aanswer(run)
            response = self._respond(answer, run, nodes, additional_source_nodes)
            event.on_end(payload={EventPayload.RESPONSE: response})
        dispatcher.event(SynthesizeEndEvent(query=bundle, response=response))
        return response

    async def aclose(self) -> None:
        """Close the connections of the drafting models and the fusor (for the running loop)."""
        seen: set[int] = set()
        for drafter in (*self._drafters, self._fusor):
            if id(drafter.backend) not in seen:
                seen.add(id(drafter.backend))
                await drafter.backend.aclose()

    # ------------------------------------------------------------------ engine

    def _prepare(self, query: str, chunks: Sequence[str], overrides: Mapping[str, Any]) -> _Run:
        if not query.strip():
            raise InvalidRequestError("the query is empty; ask a question")
        sources = [Source(i + 1, text) for i, text in enumerate(chunks)]
        params = (
            sampling_params(self._draft_params.model_dump(exclude_unset=True), overrides)
            if overrides
            else self._draft_params
        )
        plan = plan_drafts(
            query=query,
            sources=sources,
            drafters=self._drafters,
            num_drafts=self._num_drafts,
            mode=self._context,
            prompt=self._draft_prompt,
            params=params,
            count=self._count,
        )
        aggregator = GroundedFuse(
            self._fusor.backend,
            prompt=self._fuse_prompt,
            query=query,
            sources=plan.sources,
            context_window=self._fusor.context_window,
            num_output=self._fusor.num_output,
            count=self._count,
            params=self._fuse_params,
        )
        return _Run(Fusion(plan.pool, aggregator, self._policy), plan, aggregator, len(sources))

    def _finish(self, run: _Run, result: FusionResult) -> str | BaseModel:
        record_details(
            run.details,
            result=result,
            plan=run.plan,
            aggregator=run.aggregator,
            mode=self._context,
            num_sources=run.num_sources,
        )
        if self._output_cls is None:
            return result.content
        try:
            return self._output_cls.model_validate_json(result.content)
        except ValidationError as exc:
            raise AggregationError(
                f"the fused answer is not a valid {self._output_cls.__name__} ({exc.error_count()}"
                " errors); the fusor must support response_format json_schema. Details are in "
                "the error's record",
                record=result.aggregation,
            ) from exc

    def _answer(self, run: _Run) -> str | BaseModel | Generator[str, None, None]:
        if self._streaming:
            return self._stream(run)
        result = run.fusion.run(run.plan.request)
        dispatch_result_events(dispatcher, result)
        return self._finish(run, result)

    async def _aanswer(self, run: _Run) -> str | BaseModel | AsyncGenerator[str, None]:
        if self._streaming:
            return self._astream(run)
        result = await run.fusion.arun(run.plan.request)
        dispatch_result_events(dispatcher, result)
        return self._finish(run, result)

    def _stream(self, run: _Run) -> Generator[str, None, None]:
        consumer = FusionEventConsumer(dispatcher)
        events = run.fusion.stream(run.plan.request)
        try:
            for event in events:
                delta = consumer.feed(event)
                if delta:
                    yield delta
        finally:
            events.close()  # type: ignore[attr-defined]
        self._finish(run, consumer.final())

    async def _astream(self, run: _Run) -> AsyncGenerator[str, None]:
        consumer = FusionEventConsumer(dispatcher)
        events = run.fusion.astream(run.plan.request)
        try:
            async for event in events:
                delta = consumer.feed(event)
                if delta:
                    yield delta
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        self._finish(run, consumer.final())

    def _respond(
        self,
        answer: RESPONSE_TEXT_TYPE,
        run: _Run,
        nodes: Sequence[NodeWithScore],
        additional: Sequence[NodeWithScore] | None,
    ) -> RESPONSE_TYPE:
        response = self._prepare_response_output(answer, [*nodes, *(additional or [])])
        if response.metadata is None:
            response.metadata = {}
        # Filled now, or when a stream has been read to its end.
        response.metadata[METADATA_KEY] = run.details
        return response


def _texts(nodes: Sequence[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]


def _default_drafts(models: Sequence[Model]) -> int:
    return len(models) if len(models) > 1 else 3


def _drafter(
    model: Model, context_window: int | None, num_output: int | None, max_tokens: int | None
) -> Drafter:
    window = context_window
    reserved = num_output or max_tokens
    if isinstance(model, LLM):
        meta = model.metadata
        window = window or meta.context_window
        reserved = reserved or (meta.num_output if meta.num_output > 0 else None)
    return Drafter(
        backend=as_backend(model),
        context_window=window or DEFAULT_CONTEXT_WINDOW,
        num_output=reserved or DEFAULT_NUM_OUTPUTS,
    )


def _as_llm(model: Model, drafter: Drafter) -> LLM:
    """The fusor as a LlamaIndex LLM (what BaseSynthesizer holds as ``llm``)."""
    if isinstance(model, LLM):
        return model
    return FusionLLM(
        Fusion(Pool.repeat(drafter.backend, 1)),
        context_window=drafter.context_window,
        num_output=drafter.num_output,
    )


def _schema_format(output_cls: type[BaseModel] | None) -> dict[str, Any] | None:
    if output_cls is None:
        return None
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": output_cls.__name__, "schema": output_cls.model_json_schema()},
        }
    }
