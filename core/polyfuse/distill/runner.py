"""``distill`` / ``adistill``: check everything, resume what is done, run an engine, summarise.

Order of work, so that mistakes surface before any request is sent or anything is lost:

1. the prompts file exists and has a usable prompt field; output and errors paths are writable;
2. the output and errors files are locked, a torn last line is cut off, and the input hashes
   already there are collected (with their config fingerprints);
3. the prompts are read once to count what is left and to report bad lines by number;
4. the panel is built (endpoints, keys); then the engine runs the remaining rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._sync import run_sync
from .errors import DistillConfigError, DistillInputError, DistillOutputError
from .inputs import InputProblem, InputSpec, PromptRow, read_prompts
from .local_engine import run_local
from .outcome import RowOutcome
from .panel import Admission, Panel
from .pricing import PriceTable
from .processor import RowProcessor
from .progress import ProgressListener, RunStats
from .sink import RecordSink
from .spec import DistillSpec
from .stopping import StopSignal
from .store import JsonlAppender, ScanResult, check_writable, scan_jsonl

__all__ = ["DistillSummary", "adistill", "distill", "errors_path_for"]

logger = logging.getLogger("polyfuse.distill")

Engine = Literal["asyncio", "ray"]
_PROBLEMS_KEPT = 50


@dataclass
class DistillSummary:
    """What a run did.

    Attributes:
        output / errors: the files written.
        rows: usable prompts in the input (distinct or not).
        already_done: rows skipped because their record was already in the output.
        skipped_failed: rows skipped because they failed before (rerun with ``retry_errors``).
        duplicates: rows skipped because the same prompt came earlier in the input.
        problems: unusable input lines (first 50), with line numbers; ``problem_count`` has all.
        stats: rows written and failed in this run, tokens, cost, time, rows/s.
        repaired: what was repaired on start (a torn last line cut off).
    """

    output: Path
    errors: Path
    rows: int = 0
    already_done: int = 0
    skipped_failed: int = 0
    duplicates: int = 0
    problems: list[InputProblem] = field(default_factory=list)
    problem_count: int = 0
    stats: RunStats = field(default_factory=lambda: RunStats(total=0))
    repaired: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Rows this run set out to process."""
        return self.stats.total


def errors_path_for(output: Path) -> Path:
    """The default errors file: ``out.jsonl`` → ``out.errors.jsonl``."""
    name = output.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return output.with_name(f"{stem}.errors.jsonl")


@dataclass
class _Resume:
    done: set[str]
    failed: set[str]


def _resume_state(
    spec: DistillSpec,
    output: tuple[Path, ScanResult],
    errors: tuple[Path, ScanResult],
    *,
    allow_mixed_config: bool,
) -> _Resume:
    fingerprint = spec.fingerprint()
    if not allow_mixed_config:
        for path, scan in (output, errors):
            other = sorted(scan.configs - {fingerprint})
            if other:
                raise DistillOutputError(
                    f"{str(path)!r} holds records made with another configuration "
                    f"(config {', '.join(other)}; this run is {fingerprint}): teachers, fusor, "
                    "parameters or format differ. Write to a new file, or pass "
                    "--allow-mixed-config to add to it anyway"
                )
    done = set(output[1].hashes)
    return _Resume(done=done, failed=set(errors[1].hashes) - done)


def _pending(
    spec: InputSpec,
    resume: _Resume,
    summary: DistillSummary | None,
    *,
    retry_errors: bool,
    limit: int | None,
) -> Iterator[PromptRow]:
    """The rows still to do; with ``summary`` given, also counts everything into it."""
    seen: set[str] = set()
    taken = 0
    for item in read_prompts(spec):
        if isinstance(item, InputProblem):
            if summary is not None:
                summary.problem_count += 1
                if len(summary.problems) < _PROBLEMS_KEPT:
                    summary.problems.append(item)
            continue
        if summary is not None:
            summary.rows += 1
        digest = item.input_hash
        if digest in seen:
            if summary is not None:
                summary.duplicates += 1
            continue
        seen.add(digest)
        if digest in resume.done:
            if summary is not None:
                summary.already_done += 1
            continue
        if digest in resume.failed and not retry_errors:
            if summary is not None:
                summary.skipped_failed += 1
            continue
        if limit is not None and taken >= limit:
            continue
        taken += 1
        yield item


async def adistill(
    source: InputSpec | str | Path,
    output: str | Path,
    spec: DistillSpec,
    *,
    errors: str | Path | None = None,
    retry_errors: bool = False,
    engine: Engine = "asyncio",
    prices: PriceTable | None = None,
    progress: ProgressListener | None = None,
    max_rows_in_flight: int | None = None,
    limit: int | None = None,
    fsync: bool = True,
    allow_mixed_config: bool = False,
    ray_actors: int = 2,
    ray_address: str | None = None,
    stop: StopSignal | None = None,
) -> DistillSummary:
    """Turn a prompts file into training records; resumable and crash-safe.

    Args:
        source: the prompts (a path, or an :class:`InputSpec` to set the prompt field etc.).
        output: the records file (JSONL, appended to).
        spec: teachers, fusor, judge, aggregations and record format.
        errors: where failed rows go (default: ``<output stem>.errors.jsonl``).
        retry_errors: process again the rows that failed in earlier runs.
        engine: ``asyncio`` (one process) or ``ray`` (Ray Data actors; ``pip install
            "polyfuse[ray]"``).
        prices: per-model prices for the records' cost.
        progress: told about progress (e.g. :class:`~polyfuse.distill.RichProgress`).
        max_rows_in_flight: override the number of rows in flight (default: enough to keep
            every endpoint's ``max_concurrency`` full).
        limit: process at most this many new rows.
        fsync: fsync each batch of lines (turn off only on throwaway data).
        allow_mixed_config: append to an output made with another configuration.
        ray_actors / ray_address: the Ray engine's actor count and cluster address.
        stop: once set, no new row is started and the rows in flight finish (asyncio engine;
            see :func:`~polyfuse.distill.stop_on_signals`).

    Returns:
        A :class:`DistillSummary`. Failed rows do not raise: they are in the errors file.

    Raises:
        DistillInputError, DistillOutputError, DistillConfigError: before any request is sent.
    """
    input_spec = source if isinstance(source, InputSpec) else InputSpec(Path(source))
    out_path = Path(output)
    err_path = Path(errors) if errors is not None else errors_path_for(out_path)
    _check_options(engine, limit, max_rows_in_flight, ray_actors)
    if not input_spec.path.exists():
        raise DistillInputError(f"the prompts file {str(input_spec.path)!r} does not exist")
    input_spec.resolved_format  # noqa: B018 - raises early on an unknown suffix
    check_writable(out_path, what="output", not_same_as=[input_spec.path])
    check_writable(err_path, what="errors file", not_same_as=[input_spec.path, out_path])
    summary = DistillSummary(output=out_path, errors=err_path)

    out_file = JsonlAppender(out_path, fsync=fsync).open()
    try:
        err_file = JsonlAppender(err_path, fsync=fsync).open()
    except BaseException:
        out_file.close()
        raise
    panel: Panel | None = None
    processor: RowProcessor | None = None
    try:
        scans = (
            (out_path, scan_jsonl(out_path, repair=True)),
            (err_path, scan_jsonl(err_path, repair=True)),
        )
        for path, scan in scans:
            if scan.torn_bytes:
                summary.repaired.append(
                    f"cut a torn last line ({scan.torn_bytes} bytes) from {str(path)!r}"
                )
                logger.warning("%s", summary.repaired[-1])
        resume = _resume_state(spec, *scans, allow_mixed_config=allow_mixed_config)
        total = sum(
            1 for _ in _pending(input_spec, resume, summary, retry_errors=retry_errors, limit=limit)
        )
        if summary.rows == 0:
            raise DistillInputError(_no_rows_message(input_spec, summary))
        if total:
            # Build endpoints (keys, an embedded model) and check parameters before the start.
            panel = await asyncio.to_thread(Panel.build, spec)
            processor = RowProcessor(spec, panel, prices=prices, source=str(input_spec.path))
        summary.stats = RunStats(total=total)
        if progress is not None:
            progress.started(summary)
        try:
            if panel is not None and processor is not None:
                admission = panel.admission().capped(max_rows_in_flight)
                rows = _pending(input_spec, resume, None, retry_errors=retry_errors, limit=limit)
                await _run_engine(
                    rows,
                    processor,
                    admission,
                    summary.stats,
                    RecordSink(out_file, err_file, _advance(summary.stats, progress)),
                    engine=engine,
                    ray_actors=ray_actors,
                    ray_address=ray_address,
                    stop=stop,
                )
        finally:
            summary.stats.stop()
            if progress is not None:
                progress.finished(summary.stats)
    finally:
        try:
            if panel is not None:
                await panel.aclose()
        finally:
            err_file.close()
            out_file.close()
    return summary


def _check_options(
    engine: str, limit: int | None, max_rows_in_flight: int | None, ray_actors: int
) -> None:
    if engine not in ("asyncio", "ray"):
        raise DistillConfigError(f"engine must be 'asyncio' or 'ray' (got {engine!r})")
    if limit is not None and limit < 0:
        raise DistillConfigError(f"limit must be >= 0 (got {limit})")
    if max_rows_in_flight is not None and max_rows_in_flight < 1:
        raise DistillConfigError(f"max_rows_in_flight must be >= 1 (got {max_rows_in_flight})")
    if ray_actors < 1:
        raise DistillConfigError(f"ray_actors must be >= 1 (got {ray_actors})")


def _advance(stats: RunStats, progress: ProgressListener | None) -> Callable[[RowOutcome], None]:
    def on_written(outcome: RowOutcome) -> None:
        stats.add(outcome)
        if progress is not None:
            progress.advanced(stats)

    return on_written


async def _run_engine(
    rows: Iterator[PromptRow],
    processor: RowProcessor,
    admission: Admission,
    stats: RunStats,
    sink: RecordSink,
    *,
    engine: Engine,
    ray_actors: int,
    ray_address: str | None,
    stop: StopSignal | None,
) -> None:
    sink.start()
    stats.started_at = time.perf_counter()
    try:
        if engine == "ray":
            from .ray_engine import run_ray

            await run_ray(
                list(rows),
                processor.spec,
                sink,
                admission=admission,
                prices=processor.prices,
                source=processor.source,
                actors=ray_actors,
                address=ray_address,
            )
        else:
            await run_local(rows, processor, admission, sink, stop=stop)
    finally:
        await sink.close()


def _no_rows_message(spec: InputSpec, summary: DistillSummary) -> str:
    if not summary.problem_count:
        return f"{str(spec.path)!r} holds no prompts"
    shown = "; ".join(str(p) for p in summary.problems[:5])
    more = f" (and {summary.problem_count - 5} more)" if summary.problem_count > 5 else ""
    return (
        f"no usable prompt in {str(spec.path)!r}: {shown}{more}. The prompt field is "
        f"{spec.describe_field()}; name another with --prompt-field"
    )


def distill(
    source: InputSpec | str | Path,
    output: str | Path,
    spec: DistillSpec,
    *,
    errors: str | Path | None = None,
    retry_errors: bool = False,
    engine: Engine = "asyncio",
    prices: PriceTable | None = None,
    progress: ProgressListener | None = None,
    max_rows_in_flight: int | None = None,
    limit: int | None = None,
    fsync: bool = True,
    allow_mixed_config: bool = False,
    ray_actors: int = 2,
    ray_address: str | None = None,
) -> DistillSummary:
    """Sync :func:`adistill` (same arguments; works in scripts, threads and Jupyter)."""
    return run_sync(
        adistill(
            source,
            output,
            spec,
            errors=errors,
            retry_errors=retry_errors,
            engine=engine,
            prices=prices,
            progress=progress,
            max_rows_in_flight=max_rows_in_flight,
            limit=limit,
            fsync=fsync,
            allow_mixed_config=allow_mixed_config,
            ray_actors=ray_actors,
            ray_address=ray_address,
        )
    )
