"""Run the fusion server with uvicorn: what ``polyfuse serve`` calls."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn

from ..errors import PolyfuseError
from ..presets import PresetRegistry, load_config
from ..redaction import LOG_FILTER
from .app import create_app
from .protocol import protocol_for
from .settings import ServerSettings

__all__ = ["run_server", "settings_for"]


def settings_for(
    config: Path | str, *, host: str | None = None, port: int | None = None
) -> tuple[PresetRegistry, ServerSettings]:
    """Load a presets file and its ``[server]`` settings, with ``host``/``port`` overrides."""
    registry = PresetRegistry(load_config(config))
    table = dict(registry.config.server)
    if host is not None:
        table["host"] = host
    if port is not None:
        table["port"] = port
    return registry, ServerSettings.from_table(table)


def _log_to_stderr(level: str) -> None:
    """Show polyfuse's own log lines (one per request at ``info``) like uvicorn's."""
    from uvicorn.logging import DefaultFormatter

    logger = logging.getLogger("polyfuse")
    if not any(getattr(h, "_polyfuse_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        handler._polyfuse_serve = True  # type: ignore[attr-defined]
        # On the handler too: it sees the records of every polyfuse.* logger, even one
        # created after the app (whose loggers carry the filter themselves).
        handler.addFilter(LOG_FILTER)
        logger.addHandler(handler)
    logger.setLevel(level.upper())


class _Server(uvicorn.Server):
    """uvicorn's server, except that a shutdown asked for by SIGINT/SIGTERM is a success.

    uvicorn re-raises the signal once it has drained, so the process would end "killed by
    SIGTERM" (or with a KeyboardInterrupt) after a clean, graceful shutdown.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_server(config: Path | str, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the presets in ``config`` until SIGINT/SIGTERM, then drain and return.

    On shutdown the server stops accepting connections and lets requests in flight finish
    for up to ``[server] shutdown_timeout_s`` seconds before cancelling them.

    Raises:
        InvalidRequestError: the presets file or its ``[server]`` table is invalid.
        PolyfuseError: the server could not start (port taken, embedded model failed).
    """
    registry, settings = settings_for(config, host=host, port=port)
    app = create_app(registry, settings)
    _log_to_stderr(settings.log_level)
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.access_log,
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
            lifespan="on",
            http=protocol_for(settings),  # connection, header-size and header-time limits
            ws="none",
        )
    )
    server.run()
    if not server.started:
        raise PolyfuseError(
            f"the server did not start on {settings.host}:{settings.port} "
            "(see the log above: is the port taken?)"
        )
