"""Calling polyfuse's async API from sync code (scripts, threads, Jupyter, sync framework hooks).

Both helpers submit work to one background event loop in a daemon thread, the loop that
``Fusion.run``/``Fusion.stream`` use, so backends keep their connection pools warm across sync
calls and a running loop in the calling thread (Jupyter) is never blocked or re-entered::

    from polyfuse.sync import run_sync

    result = run_sync(fusion.arun("Why is the sky blue?"))
"""

from __future__ import annotations

from ._sync import iterate_sync, run_sync

__all__ = ["iterate_sync", "run_sync"]
