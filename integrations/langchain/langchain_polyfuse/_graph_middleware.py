"""``FusionMiddleware``: fusion progress and records for agents built with ``create_agent``.

Needs the ``langchain`` package (``create_agent`` lives there, not in ``langchain-core``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command, StreamWriter
from typing_extensions import NotRequired

from ._graph_progress import FusionProgress
from .chat_models import listen_to_fusions
from .graph import add_records

__all__ = ["FusionAgentState", "FusionMiddleware"]

_MODEL_NODE = "model"  # the name create_agent gives its model step

ModelResult = ModelResponse[Any] | ExtendedModelResponse[Any]


def _writer(runtime: Runtime[Any]) -> StreamWriter | None:
    """The agent's stream writer, or ``None`` where LangGraph's writer cannot work.

    LangGraph's writer reads the ambient config, which async nodes on Python 3.10 lack (a
    LangGraph limitation, see ``get_stream_writer``); there the progress events are skipped
    and only the records are kept.
    """
    try:
        get_config()
    except RuntimeError:
        return None
    return runtime.stream_writer


class FusionAgentState(AgentState[Any]):
    """``create_agent``'s state plus ``fusions``: one JSON fusion record per model step."""

    fusions: NotRequired[Annotated[list[dict[str, Any]], add_records]]


class FusionMiddleware(AgentMiddleware[FusionAgentState, Any, Any]):
    """Streams a ``ChatFusion`` agent's candidate progress and keeps its fusion records.

    ``create_agent(ChatFusion(...), tools, middleware=[FusionMiddleware()])`` runs the usual
    agent loop; with this middleware every model step also writes its candidates' progress to
    the ``custom`` stream (the payloads of :class:`FusionNode`, with ``"node": "model"``) and
    appends the step's :class:`~polyfuse.FusionResult` as JSON to ``state["fusions"]``.
    Model calls that are not fusions pass through untouched. (Async agents on Python 3.10 get
    the records but no progress events: LangGraph's stream writer needs Python 3.11 there.)

    Args:
        keep_records: append the records to the state (``False``: progress only).
    """

    state_schema = FusionAgentState

    def __init__(self, *, keep_records: bool = True) -> None:
        super().__init__()
        self.keep_records = keep_records

    def _finish(self, response: ModelResponse[Any], progress: FusionProgress) -> ModelResult:
        if not self.keep_records or progress.result is None:
            return response
        record = progress.result.model_dump(mode="json")
        return ExtendedModelResponse(
            model_response=response, command=Command(update={"fusions": [record]})
        )

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResult:
        """Run the model step with a listener on its fusion."""
        progress = FusionProgress(_writer(request.runtime), node=_MODEL_NODE)
        with listen_to_fusions(progress):
            response = handler(request)
        return self._finish(response, progress)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResult:
        """Async :meth:`wrap_model_call`."""
        progress = FusionProgress(_writer(request.runtime), node=_MODEL_NODE)
        with listen_to_fusions(progress):
            response = await handler(request)
        return self._finish(response, progress)
