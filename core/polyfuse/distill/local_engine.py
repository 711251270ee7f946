"""The default engine: every row in one asyncio loop, with bounded rows in flight.

Rows are admitted while fewer than ``max_in_flight`` are running; each holds a sampling slot only
while its teachers answer (see :class:`~polyfuse.distill.panel.Admission`), so the teachers'
endpoints stay full while other rows wait for the fusor or the judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from .inputs import PromptRow
from .outcome import RowOutcome
from .panel import Admission
from .sink import RecordSink
from .stopping import StopSignal

__all__ = ["RowWorker", "run_local"]


class RowWorker(Protocol):
    """What the engine drives: :class:`~polyfuse.distill.processor.RowProcessor`, or another
    row processor (``polyfuse eval``'s) with the same ``process`` method."""

    async def process(self, row: PromptRow, gate: asyncio.Semaphore | None = None) -> RowOutcome:
        """The outcome of one row (failures as an error outcome)."""
        ...


async def run_local(
    rows: Iterable[PromptRow],
    processor: RowWorker,
    admission: Admission,
    sink: RecordSink,
    *,
    stop: StopSignal | None = None,
) -> None:
    """Process ``rows`` and hand each outcome to ``sink``.

    Returns when every admitted row is done. Once ``stop`` is set no further row is admitted;
    the rows in flight finish. A bug in processing or a failing writer stops admission, cancels
    the rows in flight and raises; what was written stays written.
    """
    gate = asyncio.Semaphore(admission.sampling_slots)
    room = asyncio.Semaphore(admission.max_in_flight)
    running: set[asyncio.Task[None]] = set()
    crashed: list[BaseException] = []

    async def one(row: PromptRow) -> None:
        try:
            sink.put(await processor.process(row, gate))
        finally:
            room.release()

    def settled(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            crashed.append(task.exception())  # type: ignore[arg-type]

    try:
        for row in rows:
            if stop is not None and stop.is_set():
                break
            await room.acquire()
            _raise_if_failed(crashed, sink)
            if stop is not None and stop.is_set():  # asked while this row waited for room
                room.release()
                break
            task = asyncio.ensure_future(one(row))
            running.add(task)
            task.add_done_callback(settled)
        while running:
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
            _raise_if_failed(crashed, sink)
    finally:
        if running:
            pending = list(running)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _raise_if_failed(crashed: list[BaseException], sink: RecordSink) -> None:
    if crashed:
        raise crashed[0]
    error = sink.error
    if error is not None:
        raise error
