"""Phase one of an eval: every row's generation record (candidates + each strategy's answer),
written with ``polyfuse distill``'s machinery — the same input readers, crash-safe append-only
store, resume by input hash, group-committing sink, asyncio engine and progress bar.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..distill.inputs import InputSpec
from ..distill.local_engine import run_local
from ..distill.panel import Admission
from ..distill.progress import ProgressListener, RunStats
from ..distill.runner import DistillSummary, _advance, _pending, _Resume
from ..distill.sink import RecordSink
from ..distill.stopping import StopSignal
from ..distill.store import JsonlAppender, check_writable, scan_jsonl
from .errors import EvalConfigError, EvalDataError
from .processor import EvalProcessor
from .setup import EvalPlan

__all__ = ["GenerationRun", "RayOptions", "generate"]


@dataclass(frozen=True)
class RayOptions:
    """Run generation on Ray Data actors (``pip install ".[ray]"`` (in a polyfuse checkout)) with this plan."""

    plan: EvalPlan
    actors: int = 2
    address: str | None = None


@dataclass
class GenerationRun:
    """What generating did: distill's summary (rows, resumed, bad lines, stats) and the files."""

    summary: DistillSummary
    generations: Path
    errors: Path


async def generate(
    source: InputSpec,
    generations: Path,
    processor: EvalProcessor,
    admission: Admission,
    *,
    progress: ProgressListener | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    fsync: bool = True,
    ray: RayOptions | None = None,
    stop: StopSignal | None = None,
) -> GenerationRun:
    """Make the generation records still missing from ``generations`` (resuming).

    ``processor`` runs the rows in this process (asyncio engine) unless ``ray`` is given: then
    distill's Ray engine runs :class:`~polyfuse.eval.ray_actor.EvalActor` s built from its plan.
    Once ``stop`` is set the asyncio engine starts no new row; the rows in flight finish.
    """
    errors = generations.with_name(generations.name.replace(".jsonl", "") + ".errors.jsonl")
    check_writable(generations, what="generations file", not_same_as=[source.path])
    summary = DistillSummary(output=generations, errors=errors)
    out_file = JsonlAppender(generations, fsync=fsync).open()
    try:
        err_file = JsonlAppender(errors, fsync=fsync).open()
    except BaseException:
        out_file.close()
        raise
    try:
        out_scan = scan_jsonl(generations, repair=True)
        err_scan = scan_jsonl(errors, repair=True)
        for path, scan in ((generations, out_scan), (errors, err_scan)):
            if scan.torn_bytes:
                summary.repaired.append(
                    f"cut a torn last line ({scan.torn_bytes} bytes) from {str(path)!r}"
                )
        fingerprint = processor.setup.fingerprint
        other = sorted((out_scan.configs | err_scan.configs) - {fingerprint})
        if other:
            raise EvalConfigError(
                f"{str(generations.parent)!r} holds an eval made with another configuration "
                f"({', '.join(other)}; this run is {fingerprint}): strategies, panel or "
                "presets differ. Write the eval to a new directory"
            )
        done = set(out_scan.hashes)
        resume = _Resume(done=done, failed=set(err_scan.hashes) - done)
        total = sum(
            1 for _ in _pending(source, resume, summary, retry_errors=retry_errors, limit=limit)
        )
        if summary.rows == 0:
            shown = "; ".join(str(p) for p in summary.problems[:5])
            raise EvalDataError(
                f"no usable prompt in {str(source.path)!r}"
                + (f": {shown}" if shown else "")
                + "; each row needs a 'prompt' (text or messages)"
            )
        summary.stats = RunStats(total=total)
        if progress is not None:
            progress.started(summary)
        sink = RecordSink(out_file, err_file, _advance(summary.stats, progress))
        try:
            if total:
                rows = _pending(source, resume, None, retry_errors=retry_errors, limit=limit)
                sink.start()
                summary.stats.started_at = time.perf_counter()
                try:
                    if ray is None:
                        await run_local(rows, processor, admission, sink, stop=stop)
                    else:
                        from ..distill.ray_engine import run_ray
                        from .ray_actor import EvalActor

                        await run_ray(
                            list(rows),
                            None,
                            sink,
                            admission=admission,
                            prices=None,
                            source=str(source.path),
                            actors=ray.actors,
                            address=ray.address,
                            actor=EvalActor,
                            actor_kwargs={"plan": ray.plan},
                        )
                finally:
                    await sink.close()
        finally:
            summary.stats.stop()
            if progress is not None:
                progress.finished(summary.stats)
    finally:
        err_file.close()
        out_file.close()
    return GenerationRun(summary=summary, generations=generations, errors=errors)
