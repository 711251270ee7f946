"""Stopping a long run gently: the first Ctrl-C lets the rows in flight finish.

A row of ``polyfuse distill`` or ``polyfuse eval`` is many model calls (candidates, then fusor
and judges); on a slow backend dozens of rows are in flight at once, each minutes from done.
Stopping them mid-way throws that work away. So the commands treat the first SIGINT (Ctrl-C) or
SIGTERM as "admit no new rows": the rows already admitted finish and are written, and an eval
goes on to judge them and write its report. A second Ctrl-C stops at once, as before; what was
written stays written and a rerun resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["StopSignal", "stop_on_signals"]


class StopSignal:
    """Set once a run should admit no new rows (thread-safe; the engines poll it)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        """What asked for the stop (``"SIGINT"``, ``"SIGTERM"`` or the caller's reason)."""

    def set(self, reason: str = "requested") -> None:
        """Ask the run to admit no new rows."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(
    say: Callable[[str], None] | None = None,
) -> Generator[StopSignal, None, None]:
    """Within the running event loop: the first SIGINT or SIGTERM sets the yielded
    :class:`StopSignal` (and ``say`` tells the user); the handlers that were there before come
    back at once, so a second signal acts as it always did (Ctrl-C: ``KeyboardInterrupt``),
    and where the process started with it ignored, as an unignored one would.

    Where the loop cannot take signal handlers (not the main thread, Windows) nothing is
    installed and signals keep their usual effect.
    """
    loop = asyncio.get_running_loop()
    stop = StopSignal()
    previous: dict[signal.Signals, Any] = {}

    def restore(*, escalate: bool = False) -> None:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if escalate and handler in (signal.SIG_IGN, signal.SIG_DFL):
                # The process started with the signal ignored (a background job of a
                # non-interactive shell) or left to the default: having taken the first one,
                # the next must still stop the run.
                handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, handler)
        previous.clear()

    def first(sig: signal.Signals) -> None:
        restore(escalate=True)
        stop.set(sig.name)
        if say is not None:
            say(
                f"{sig.name}: no new rows are started; the rows in flight finish and are "
                "written. Press Ctrl-C again to stop at once (a rerun resumes)."
            )

    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: the default is the closest we can restore
            handler = signal.SIG_DFL
        try:
            loop.add_signal_handler(sig, first, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            # NotImplementedError: a loop without signal support (Windows); RuntimeError or
            # ValueError: not the main thread. The signal keeps its usual effect, as documented.
            continue
        previous[sig] = handler
    try:
        yield stop
    finally:
        restore()
