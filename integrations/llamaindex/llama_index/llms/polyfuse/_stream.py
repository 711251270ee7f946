"""Turning a fusion's event stream into LlamaIndex events and text deltas."""

from __future__ import annotations

from llama_index.core.instrumentation import Dispatcher

from polyfuse import (
    AggregationError,
    AnswerRestarted,
    FusedToken,
    FusionDone,
    FusionEvent,
    FusionResult,
)

from .events import dispatch_fusion_event

__all__ = ["FusionEventConsumer"]


class FusionEventConsumer:
    """Feeds on a streamed fusion's events: sends each to the LlamaIndex dispatcher, hands
    back the answer's text deltas, and keeps the final :class:`~polyfuse.FusionResult`.

    A stream cannot take back text it already gave out: when the aggregator fails after some of
    its answer was streamed, :meth:`feed` raises :class:`~polyfuse.AggregationError` rather than
    append the fallback answer to a void one. Before any text, the fallback streams as usual.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._streamed = 0
        self.result: FusionResult | None = None

    def feed(self, event: FusionEvent) -> str | None:
        """Handle one event; return its text delta, if it carries one."""
        dispatch_fusion_event(self._dispatcher, event)
        if isinstance(event, FusedToken):
            self._streamed += len(event.delta)
            return event.delta or None
        if isinstance(event, AnswerRestarted) and self._streamed:
            raise AggregationError(
                f"the fused answer failed after {self._streamed} characters were streamed "
                f"({event.reason}); that text is void. Retry, or call without streaming to get "
                "the fallback answer (the best surviving candidate)"
            )
        if isinstance(event, FusionDone):
            self.result = event.result
        return None

    def final(self) -> FusionResult:
        """The fusion's result (after the stream ended).

        Raises:
            AggregationError: the stream ended without a result.
        """
        if self.result is None:
            raise AggregationError("the fusion stream ended without a result")
        return self.result
