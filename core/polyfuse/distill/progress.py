"""Run statistics (rows/s, ETA, tokens, cost) and a live progress bar for them.

:class:`RunStats` is plain data; :class:`RichProgress` renders it with ``rich`` (installed with
``polyfuse[cli]``), imported only when a bar is shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .outcome import RowOutcome

if TYPE_CHECKING:
    from .runner import DistillSummary

__all__ = ["ProgressListener", "RichProgress", "RunStats"]


@dataclass
class RunStats:
    """Counters of one run.

    Attributes:
        total: rows this run has to process (after skipping what is done).
        written: records written.
        failed: rows written to the errors file.
        tokens: tokens spent, every role summed.
        cost_usd: cost of those tokens (priced models only).
    """

    total: int
    written: int = 0
    failed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started_at: float = field(default_factory=time.perf_counter)
    ended_at: float | None = None

    @property
    def remaining(self) -> int:
        """Rows this run had to process and did not (a stop asked for none to start)."""
        return self.total - self.written - self.failed

    def add(self, outcome: RowOutcome) -> None:
        """Count one durable outcome."""
        if outcome.ok:
            self.written += 1
        else:
            self.failed += 1
        self.tokens += outcome.tokens
        self.cost_usd += outcome.cost_usd

    def stop(self) -> None:
        """Freeze the clock."""
        if self.ended_at is None:
            self.ended_at = time.perf_counter()

    @property
    def done(self) -> int:
        """Rows finished (written or failed)."""
        return self.written + self.failed

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started (until it stopped)."""
        end = self.ended_at if self.ended_at is not None else time.perf_counter()
        return end - self.started_at

    @property
    def rows_per_s(self) -> float:
        """Finished rows per second."""
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (``None`` before the first row)."""
        rate = self.rows_per_s
        return (self.total - self.done) / rate if rate > 0 else None


class ProgressListener(Protocol):
    """Gets told as a run starts, advances and ends (all calls on the run's loop)."""

    def started(self, summary: DistillSummary) -> None:
        """The input is read and the output resumed; rows are about to be sent.

        ``summary`` holds what was found (bad input lines, rows already done, repairs) and
        ``summary.stats`` the counters that will advance.
        """
        ...

    def advanced(self, stats: RunStats) -> None:
        """One more row is durable."""
        ...

    def finished(self, stats: RunStats) -> None:
        """The run ended (completed, failed or interrupted)."""
        ...


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RichProgress:
    """A live bar: rows done/total, rows/s, ETA, tokens and cost so far, failures.

    Args:
        console: a ``rich.console.Console`` (default: stderr).
        description: the label left of the bar.
        priced: whether prices were given; without them the cost column stays empty rather
            than showing a made-up ``$0.0000``.
    """

    def __init__(
        self, console: Any = None, description: str = "distill", *, priced: bool = True
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[tokens]} tok"),
            TextColumn("{task.fields[cost]}"),
            TextColumn("[red]{task.fields[failed]}"),
            console=self.console,
            transient=False,
        )
        self._description = description
        self._priced = priced
        self._task: Any = None

    def _fields(self, stats: RunStats) -> dict[str, Any]:
        return {
            "rate": f"{stats.rows_per_s:.1f}",
            "eta": _clock(stats.eta_s),
            "tokens": f"{stats.tokens:,}",
            "cost": f"${stats.cost_usd:.4f}" if self._priced else "cost unknown",
            "failed": f"{stats.failed} failed" if stats.failed else "",
        }

    def started(self, summary: DistillSummary) -> None:
        """Report what the input and the resume found, then show the bar."""
        from rich.markup import escape

        def say(text: str) -> None:
            self.console.print(text, soft_wrap=True, highlight=False)

        for note in summary.repaired:
            say(f"[yellow]repaired:[/] {escape(note)}")
        if summary.problem_count:
            say(f"[yellow]{summary.problem_count} input line(s) skipped:[/]")
            for problem in summary.problems[:10]:
                say(f"  {escape(str(problem))}")
            if summary.problem_count > 10:
                say(f"  ... and {summary.problem_count - 10} more")
        if summary.already_done:
            say(f"resuming: {summary.already_done} row(s) already in {escape(str(summary.output))}")
        stats = summary.stats
        self._progress.start()
        self._task = self._progress.add_task(
            self._description, total=stats.total, **self._fields(stats)
        )

    def advanced(self, stats: RunStats) -> None:
        """Move the bar."""
        self._progress.update(self._task, completed=stats.done, **self._fields(stats))

    def finished(self, stats: RunStats) -> None:
        """Draw the last state and stop."""
        if self._task is not None:
            self._progress.update(self._task, completed=stats.done, **self._fields(stats))
        self._progress.stop()
