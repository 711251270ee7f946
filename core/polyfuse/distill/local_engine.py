"""The default engine: every row in one asyncio loop, with bounded rows in flight.

Rows are admitted while fewer than ``max_in_flight`` are running; each holds a sampling slot only
while its teachers answer (see :class:`~polyfuse.distill.panel.Admission`), so the teachers'
endpoints stay full while other rows wait for the fusor or the judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .inputs import PromptRow
from .panel import Admission
from .processor import RowProcessor
from .sink import RecordSink

__all__ = ["run_local"]


async def run_local(
    rows: Iterable[PromptRow],
    processor: RowProcessor,
    admission: Admission,
    sink: RecordSink,
) -> None:
    """Process ``rows`` and hand each outcome to ``sink``.

    Returns when every admitted row is done. A bug in processing or a failing writer stops
    admission, cancels the rows in flight and raises; what was written stays written.
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
            await room.acquire()
            _raise_if_failed(crashed, sink)
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
