"""The Ray engine: the same row processing on Ray Data actors, for a cluster of CPU workers
driving many GPU endpoints.

The driver decides what is left (resume), ships the rows as a Ray dataset, and
``map_batches`` runs :class:`DistillActor` — an async callable class that builds the panel once
per actor and processes each batch's rows concurrently with
:meth:`~polyfuse.distill.processor.RowProcessor.process`. Outcomes stream back to the driver,
which alone writes them, with the same crash-safe sink as the asyncio engine. Each actor gets
``1/actors`` of every endpoint's ``max_concurrency``, so the limits hold cluster-wide.

Needs ``pip install ".[ray]"`` (in a polyfuse checkout).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .errors import DistillConfigError
from .inputs import PromptRow
from .outcome import RowOutcome
from .panel import Admission, Panel
from .pricing import PriceTable
from .processor import RowProcessor
from .sink import RecordSink
from .spec import DistillSpec

__all__ = ["DistillActor", "RowActor", "RowProcessing", "run_ray"]

_BATCHES_PER_ACTOR = 4
"""Ray Data runs this many batches of an async UDF at once per actor (its default)."""
_COLUMNS = ("input_hash", "ok", "line", "tokens", "cost_usd")


class RowProcessing(Protocol):
    """What a row actor drives: distill's :class:`RowProcessor` or eval's processor."""

    async def process(self, row: PromptRow, gate: asyncio.Semaphore | None = None) -> RowOutcome:
        """Process one row, sampling under ``gate``."""
        ...


class RowActor:
    """A Ray Data UDF over a batch of rows (JSON strings in column ``row``), given the row
    processor its subclass builds once per actor.

    Rows of every batch running in the actor share one sampling gate, sized from the actor's
    share of the endpoints' limits.
    """

    def __init__(self, processor: RowProcessing, sampling_slots: int) -> None:
        self.processor = processor
        self.sampling_slots = sampling_slots
        self._gate: asyncio.Semaphore | None = None

    async def __call__(self, batch: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
        """Process every row of the batch concurrently; one outcome row per input row."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.sampling_slots)
        rows = [PromptRow.from_dict(json.loads(text)) for text in batch["row"]]
        outcomes = await asyncio.gather(*(self.processor.process(r, self._gate) for r in rows))
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for outcome in outcomes:
            for name, value in outcome.to_dict().items():
                columns[name].append(value)
        return columns


class DistillActor(RowActor):
    """Distill's row actor: builds the panel and :class:`RowProcessor` once per actor."""

    def __init__(
        self,
        spec: DistillSpec,
        prices: PriceTable | None,
        source: str,
        share: int,
        sampling_slots: int,
    ) -> None:
        self.panel = Panel.build(spec, share=share)
        super().__init__(
            RowProcessor(spec, self.panel, prices=prices, source=source), sampling_slots
        )


async def run_ray(
    rows: list[PromptRow],
    spec: DistillSpec | None,
    sink: RecordSink,
    *,
    admission: Admission,
    prices: PriceTable | None,
    source: str,
    actors: int = 2,
    address: str | None = None,
    actor: type[Any] = DistillActor,
    actor_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Process ``rows`` on Ray Data and hand every outcome to ``sink`` (on this loop).

    Connects to ``address`` (or starts a local Ray) unless Ray is already initialised; a Ray
    started here is shut down at the end.

    ``actor`` / ``actor_kwargs`` run another row processor's actor class (``polyfuse eval``'s)
    with the same engine: it is built with ``actor_kwargs`` plus ``share`` and
    ``sampling_slots``, and called like :class:`DistillActor`.
    """
    try:
        import ray
    except ImportError:
        raise DistillConfigError(
            'the ray engine needs Ray: pip install ".[ray]" in a polyfuse checkout; or use --engine asyncio'
        ) from None
    if actors < 1:
        raise DistillConfigError(f"ray_actors must be >= 1 (got {actors})")
    if not rows:
        return
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:  # e.g. address="auto" with no cluster running
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistillConfigError(
                f"no Ray cluster at --ray-address {address!r} ({first}); start one with "
                "`ray start --head`, or drop --ray-address to run a local Ray"
            ) from None
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False  # the caller shows its own progress
    try:
        per_actor = admission.split(actors)
        batch_size = max(1, math.ceil(per_actor.max_in_flight / _BATCHES_PER_ACTOR))
        blocks = max(1, min(len(rows), math.ceil(len(rows) / batch_size)))
        dataset = ray.data.from_items(
            [{"row": json.dumps(r.to_dict(), ensure_ascii=False)} for r in rows],
            override_num_blocks=blocks,
        )
        constructor = (
            dict(actor_kwargs)
            if actor_kwargs is not None
            else {"spec": spec, "prices": prices, "source": source}
        )
        results = dataset.map_batches(
            actor,
            fn_constructor_kwargs={
                **constructor,
                "share": actors,
                "sampling_slots": per_actor.sampling_slots,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
        )
        loop = asyncio.get_running_loop()

        def drain() -> None:
            for item in results.iter_rows():
                outcome = RowOutcome.from_dict(item)
                loop.call_soon_threadsafe(sink.put, outcome)

        await asyncio.to_thread(drain)
    finally:
        context.enable_progress_bars = bars
        if started_here:
            ray.shutdown()
