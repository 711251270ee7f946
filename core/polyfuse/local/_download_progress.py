"""Progress of a model download on stderr: a rich bar on a terminal, plain lines otherwise.

A piped or logged run (CI, ``polyfuse ask ... | tee``) still sees what happens: one line when a
step starts, one per tenth of the bytes, and one when it ends.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Generator

__all__ = ["ByteProgress", "byte_progress", "format_bytes", "notice"]

ByteProgress = Callable[[int], None]
"""Reports the bytes completed so far (an absolute count, never decreasing)."""

_PREFIX = "polyfuse: "


def format_bytes(size: int) -> str:
    """``1117320768`` -> ``'1.12 GB'`` (decimal units, as download sizes are quoted)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def notice(text: str) -> None:
    """One line on stderr (for steps that have no byte count, such as waiting for a lock)."""
    sys.stderr.write(f"{_PREFIX}{text}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def byte_progress(description: str, total: int) -> Generator[ByteProgress, None, None]:
    """Show progress towards ``total`` bytes; yields the function that reports it."""
    if _stderr_is_terminal():
        with _rich_bar(description, total) as report:
            yield report
    else:
        with _plain_lines(description, total) as report:
            yield report


def _stderr_is_terminal() -> bool:
    try:
        from rich.console import Console
    except ImportError:  # rich comes with polyfuse[local]; without it, plain lines do
        return False
    return Console(stderr=True).is_terminal


@contextlib.contextmanager
def _rich_bar(description: str, total: int) -> Generator[ByteProgress, None, None]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=min(done, total))


@contextlib.contextmanager
def _plain_lines(description: str, total: int) -> Generator[ByteProgress, None, None]:
    notice(f"{description}: {format_bytes(total)}…")
    shown = 0  # tenths already reported

    def report(done: int) -> None:
        nonlocal shown
        tenths = min(10, done * 10 // total) if total > 0 else 10
        if tenths > shown and tenths < 10:
            shown = tenths
            notice(f"{description}: {tenths * 10}% ({format_bytes(done)} of {format_bytes(total)})")

    yield report
    notice(f"{description}: done")
