"""LangGraph: a fusion step for any graph (``FusionNode``), its state helpers and retry policy.

::

    from langgraph.graph import START, MessagesState, StateGraph
    from langchain_polyfuse import ChatFusion, FusionNode

    graph = StateGraph(MessagesState)
    graph.add_node("answer", FusionNode(ChatFusion(base_url=url, model="qwen", n=5)))
    graph.add_edge(START, "answer")
    app = graph.compile()

The node samples N candidates and fuses them inside one graph step, so a quorum or deadline
cancels a slow candidate instead of stalling the superstep. It streams candidate progress as
``custom`` events and the fused answer in ``messages`` mode, and can keep the whole fusion
record (JSON) in the state, where checkpointers store it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import copy_context
from functools import partial
from typing import Annotated, Any, TypeAlias

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, SystemMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.tools import BaseTool
from langgraph.config import get_stream_writer
from langgraph.graph import MessagesState
from langgraph.types import (  # default_retry_on lives here, though not in __all__
    RetryPolicy,
    StreamWriter,
    default_retry_on,  # pyright: ignore[reportPrivateImportUsage]
)
from typing_extensions import NotRequired

from polyfuse import InvalidRequestError, PolyfuseError

from ._graph_progress import PROGRESS_KEY, FusionProgress, progress_event
from .chat_models import ChatFusion, listen_to_fusions

__all__ = [
    "PROGRESS_KEY",
    "FusionNode",
    "FusionState",
    "add_records",
    "fusion_retry_on",
    "fusion_retry_policy",
    "progress_event",
]

ToolLike: TypeAlias = "dict[str, Any] | type | Callable[..., Any] | BaseTool"
"""What ``bind_tools`` accepts."""


def _graph_state_keys(config: RunnableConfig) -> set[str] | None:
    """The state keys (channels) of the graph running this node, or ``None`` outside one.

    LangGraph hands each node a reader of its channels in ``config["configurable"]``
    ("__pregel_read", a ``functools.partial`` over the channels); a key it does not know
    raises ``KeyError`` there. Anything unexpected means "cannot tell", never an error.
    """
    read = config.get("configurable", {}).get("__pregel_read")
    channels = read.args[1] if isinstance(read, partial) and len(read.args) > 1 else None
    if not isinstance(channels, Mapping):
        return None
    return {str(k) for k in channels if not str(k).startswith(("__", "branch:", "start:", "join:"))}


def add_records(
    left: list[dict[str, Any]] | None, right: dict[str, Any] | list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """State reducer that keeps every fusion record: appends one record (or a list of them)."""
    records = list(left or ())
    if isinstance(right, Mapping):
        records.append(dict(right))
    elif right:
        records.extend(right)
    return records


class FusionState(MessagesState):
    """``MessagesState`` plus ``fusions``: one JSON record per fusion step, in order (use with
    ``FusionNode(..., record_key="fusions")``)."""

    fusions: NotRequired[Annotated[list[dict[str, Any]], add_records]]


def fusion_retry_on(exc: Exception) -> bool:
    """``RetryPolicy(retry_on=...)`` predicate for fusion nodes.

    polyfuse already retries every failed request (429, 5xx, timeouts, dropped connections,
    with backoff) and tolerates failed candidates; a node retry would re-run every candidate
    and every retry again, multiplying the requests sent to a server that is already failing.
    So polyfuse errors are never retried; any other exception is retried as LangGraph's
    default would (connection errors, 5xx HTTP errors).
    """
    if isinstance(exc, PolyfuseError):
        return False
    return default_retry_on(exc)


def fusion_retry_policy(**settings: Any) -> RetryPolicy:
    """A ``RetryPolicy`` whose ``retry_on`` is :func:`fusion_retry_on` (``settings`` are the
    other ``RetryPolicy`` fields, e.g. ``max_attempts=2``)."""
    if "retry_on" in settings:
        raise InvalidRequestError(
            "fusion_retry_policy sets retry_on itself; build RetryPolicy(...) directly to use "
            "your own predicate"
        )
    return RetryPolicy(retry_on=fusion_retry_on, **settings)


def _chat_fusion(model: Any) -> ChatFusion | None:
    """The ``ChatFusion`` under ``model``: itself, the model of a ``bind``/``bind_tools``, or
    the default of ``configurable_fields``/``configurable_alternatives``."""
    while isinstance(model, (RunnableBinding, DynamicRunnable)):
        model = model.bound if isinstance(model, RunnableBinding) else model.default
    return model if isinstance(model, ChatFusion) else None


def _stream_writer(config: RunnableConfig) -> StreamWriter | None:
    """The graph's stream writer for this node run, or ``None`` when not run by a graph.

    LangGraph's writer reads the ambient config (for the subgraph namespace). In async nodes on
    Python 3.10 no ambient config follows LangGraph's tasks, so the writer is looked up and
    called inside a context that holds the node's own config.
    """
    context = copy_context()
    context.run(var_child_runnable_config.set, config)
    try:
        writer = context.run(get_stream_writer)
    except (KeyError, RuntimeError):
        return None
    return partial(context.run, writer)


class FusionNode(Runnable[Any, dict[str, Any]]):
    """A LangGraph node that answers with a message fused from N candidates.

    Add it with ``graph.add_node("name", FusionNode(chat_fusion))`` to any ``StateGraph``. It
    reads the conversation from ``state[input_key]`` (``MessagesState``'s ``messages`` by
    default), runs the :class:`ChatFusion` on it and returns ``{output_key: [fused AIMessage]}``
    (appended by the ``add_messages`` reducer). Sync (``invoke``/``stream``) and async
    (``ainvoke``/``astream``) graphs both run it natively.

    While it runs, every candidate's progress goes to the ``custom`` stream as
    ``{"polyfuse": "candidate_finished", "index": ..., "backend": ..., "latency_s": ...,
    "node": ...}`` (see :func:`progress_event` for every event), and the fused answer streams
    token by token in ``stream_mode="messages"`` (only the fused answer: the candidates' own
    tokens are not streamed).

    As the model step of an agent, pass ``tools=`` (or a ``ChatFusion.bind_tools(...)``): the
    candidates propose tool calls, the fused message carries the tool-call set that best serves
    the request, and ``ToolNode`` + ``tools_condition`` run it and loop back.

    Args:
        model: a :class:`ChatFusion`, one with arguments bound (``bind_tools``, ``bind``), or
            one made configurable (``configurable_fields``: e.g. ``n`` set per run through
            ``config["configurable"]``).
        tools: tools to bind (LangChain tools, functions, pydantic classes or OpenAI dicts);
            also available as :attr:`tools` for a ``ToolNode``.
        tool_choice: passed to ``bind_tools`` (``"auto"``, ``"any"``, a tool name, ...).
        system_prompt: a system message put before the conversation on every call.
        input_key: the state key holding the conversation (messages, or one string).
        output_key: the state key the fused message is written to, as a one-element list
            (give it the ``add_messages`` reducer).
        record_key: also write the whole fusion record there: the
            :class:`~polyfuse.FusionResult` as JSON data (every candidate's text, tool calls,
            status, latency, usage and error; the aggregation; usage by role). Checkpointers
            store it as is; ``FusionResult.model_validate(record)`` brings the object back. Use
            :class:`FusionState` (``record_key="fusions"``) to keep one record per step.
        name: the node name ``add_node(node)`` uses when given none.

    Retries: polyfuse retries each failed request itself; give the node
    ``retry_policy=fusion_retry_policy()`` (or none), not LangGraph's default policy, which
    would re-run every candidate on a polyfuse error.
    """

    def __init__(
        self,
        model: ChatFusion | Runnable[LanguageModelInput, BaseMessage],
        *,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: dict[str, Any] | str | bool | None = None,
        system_prompt: str | SystemMessage | None = None,
        input_key: str = "messages",
        output_key: str = "messages",
        record_key: str | None = None,
        name: str = "fusion",
    ) -> None:
        chat_fusion = _chat_fusion(model)
        if chat_fusion is None:
            raise InvalidRequestError(
                f"FusionNode needs a ChatFusion (or ChatFusion(...).bind_tools(...)), got "
                f"{type(model).__name__}; to call another chat model, write a plain node"
            )
        if tools is not None:
            if isinstance(model, RunnableBinding):
                raise InvalidRequestError(
                    "pass tools= with an unbound ChatFusion, or bind the tools yourself; not both"
                )
            bound = chat_fusion.bind_tools(tools, tool_choice=tool_choice)
            if model is not chat_fusion and isinstance(bound, RunnableBinding):
                bound = model.bind(**bound.kwargs)  # the same tools, on the configurable model
            model = bound
        elif tool_choice is not None:
            raise InvalidRequestError("tool_choice= needs tools=")
        self.model: Runnable[LanguageModelInput, BaseMessage] = model
        self.chat_fusion = chat_fusion
        self.tools: list[ToolLike] = list(tools or ())
        self.system_prompt = (
            SystemMessage(system_prompt) if isinstance(system_prompt, str) else system_prompt
        )
        self.input_key = input_key
        self.output_key = output_key
        self.record_key = record_key
        self.name = name

    def __repr__(self) -> str:
        record = f", record_key={self.record_key!r}" if self.record_key else ""
        return (
            f"FusionNode({self.chat_fusion.label!r}, input_key={self.input_key!r}, "
            f"output_key={self.output_key!r}{record})"
        )

    # ------------------------------------------------------------------ state in and out

    def _conversation(self, state: Any) -> list[BaseMessage]:
        if isinstance(state, Mapping):
            found = state.get(self.input_key)
        else:
            found = getattr(state, self.input_key, None)
        if found is None:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise InvalidRequestError(
                f"FusionNode reads the conversation from state[{self.input_key!r}], which is "
                f"missing (state has {keys}); set input_key= to the key that holds it"
            )
        if isinstance(found, (str, BaseMessage)):
            found = [found]
        messages: list[BaseMessage] = convert_to_messages(found)
        if not messages:
            raise InvalidRequestError(
                f"state[{self.input_key!r}] is empty; there is nothing to answer"
            )
        if self.system_prompt is not None:
            messages.insert(0, self.system_prompt)
        return messages

    def _check_state_keys(self, state: Any, config: RunnableConfig) -> None:
        """Refuse, before any token is spent, to write to keys the graph's state lacks:
        LangGraph silently drops such writes, so the answer or the record would vanish."""
        if not isinstance(state, Mapping):  # a pydantic state: its fields are the schema
            fields = getattr(type(state), "model_fields", None)
            known: Any = set(fields) if isinstance(fields, Mapping) else None
        else:
            known = _graph_state_keys(config)
        if known is None:  # not inside a graph (called directly): nothing to check
            return
        for label, key in (("output_key", self.output_key), ("record_key", self.record_key)):
            if key is not None and key not in known:
                hint = (
                    "Add e.g. `last_fusion: dict` to the state, or use FusionState with "
                    "record_key='fusions'"
                    if label == "record_key"
                    else "Add it with the add_messages reducer, or set output_key="
                )
                raise InvalidRequestError(
                    f"FusionNode {label}={key!r} is not a key of the graph's state "
                    f"(keys: {', '.join(sorted(known))}); LangGraph would drop the write "
                    f"silently. {hint}"
                )

    def _progress(self, config: RunnableConfig) -> FusionProgress:
        node = config.get("metadata", {}).get("langgraph_node", self.name)
        return FusionProgress(_stream_writer(config), node=str(node))

    def _update(self, message: BaseMessage, progress: FusionProgress) -> dict[str, Any]:
        update: dict[str, Any] = {self.output_key: [message]}
        if self.record_key is not None and progress.result is not None:
            # None only when the answer came from a LangChain cache: nothing was fused.
            update[self.record_key] = progress.result.model_dump(mode="json")
        return update

    # ------------------------------------------------------------------ Runnable

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Fuse an answer to the state's conversation; returns the state update."""
        config = ensure_config(config)
        messages = self._conversation(input)
        self._check_state_keys(input, config)
        progress = self._progress(config)
        with listen_to_fusions(progress):
            message = self.model.invoke(messages, config, **kwargs)
        return self._update(message, progress)

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async :meth:`invoke`."""
        config = ensure_config(config)
        messages = self._conversation(input)
        self._check_state_keys(input, config)
        progress = self._progress(config)
        with listen_to_fusions(progress):
            message = await self.model.ainvoke(messages, config, **kwargs)
        return self._update(message, progress)
