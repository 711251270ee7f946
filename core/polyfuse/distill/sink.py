"""The one writer of a run: outcomes in, durable lines out, in group commits.

Rows finish concurrently; a single task appends whatever has finished since its last write in
one ``write`` + ``fsync`` (in a worker thread, so the event loop keeps driving requests). A row
is counted as done only once its line is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .outcome import RowOutcome
from .store import JsonlAppender

__all__ = ["RecordSink"]

_STOP = object()


class RecordSink:
    """Routes outcomes to the output (records) or the errors file (failures).

    Args:
        output: where records go.
        errors: where failures go.
        on_written: called (on the loop) for each outcome once its line is durable.
    """

    def __init__(
        self,
        output: JsonlAppender,
        errors: JsonlAppender,
        on_written: Callable[[RowOutcome], None] | None = None,
    ) -> None:
        self.output = output
        self.errors = errors
        self.on_written = on_written
        self._queue: asyncio.Queue[RowOutcome | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RecordSink:
        """Start the writer task on the running loop."""
        self._task = asyncio.ensure_future(self._run())
        return self

    @property
    def error(self) -> BaseException | None:
        """Why the writer stopped, if it failed (e.g. the disk is full)."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    def put(self, outcome: RowOutcome) -> None:
        """Queue an outcome for writing (call from the loop's thread)."""
        self._queue.put_nowait(outcome)

    async def close(self) -> None:
        """Write everything queued, stop the writer, and raise if it failed."""
        if self._task is None:
            return
        if not self._task.done():
            self._queue.put_nowait(_STOP)
        await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            outcomes = [item for item in batch if isinstance(item, RowOutcome)]
            stopping = len(outcomes) != len(batch)
            records = [o.line for o in outcomes if o.ok]
            failures = [o.line for o in outcomes if not o.ok]
            if records:
                await asyncio.to_thread(self.output.append, records)
            if failures:
                await asyncio.to_thread(self.errors.append, failures)
            if self.on_written is not None:
                for outcome in outcomes:
                    self.on_written(outcome)
