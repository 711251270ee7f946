"""Run an ASGI app (such as :class:`FakeOpenAIServer`) with uvicorn in a background thread.

uvicorn is imported only when :func:`serve` is called, so ``import polyfuse.testing`` works
without it (``pip install polyfuse[testing]`` brings it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

from polyfuse.testing.fake_server import _ConnectionDropped

__all__ = ["ServedApp", "serve"]


@dataclass(frozen=True)
class ServedApp:
    """A running server: where it listens and what it serves."""

    app: Any
    """The ASGI app being served."""
    host: str
    """The host it is bound to."""
    port: int
    """The port it is bound to (the real one when 0 was asked for)."""
    server: Any
    """The ``uvicorn.Server``."""

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what an OpenAI client takes as ``base_url``."""
        return f"{self.root_url}/v1"


def _not_injected_drop(record: logging.LogRecord) -> bool:
    """Log filter: hide uvicorn's report of connections the fake server drops on purpose."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, _ConnectionDropped)


@contextlib.contextmanager
def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    http: Literal["auto", "h11", "httptools"] = "auto",
    loop: Literal["auto", "asyncio", "uvloop"] = "auto",
    startup_timeout_s: float = 10.0,
    shutdown_grace_s: float = 1.0,
    lifespan: Literal["on", "off", "auto"] = "off",
) -> Generator[ServedApp, None, None]:
    """Serve ``app`` with uvicorn in a daemon thread for the duration of a ``with`` block.

    Args:
        app: Any ASGI 3 application.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one (read it from the result's ``port``).
        log_level: uvicorn's log level.
        http: uvicorn's HTTP implementation; ``"auto"`` uses httptools when installed.
        loop: uvicorn's event loop; ``"auto"`` uses uvloop when installed.
        startup_timeout_s: How long to wait for the server to listen.
        shutdown_grace_s: How long in-flight requests may run on exit before being cancelled
            (whole seconds, at least 1; the fake server's sleeping requests end at once).
        lifespan: uvicorn's lifespan mode: ``"on"`` for apps that set up state at startup
            (e.g. ``polyfuse.server.create_app``); the fake server needs none.

    Yields:
        A :class:`ServedApp` with ``base_url`` (``http://127.0.0.1:PORT/v1``) and ``port``.

    Raises:
        RuntimeError: The server did not start in time (e.g. the port is taken).
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan=lifespan,
        log_level=log_level,
        http=http,
        loop=loop,
        access_log=False,
        timeout_graceful_shutdown=max(math.ceil(shutdown_grace_s), 1),
    )
    error_logger = logging.getLogger("uvicorn.error")
    if _not_injected_drop not in error_logger.filters:
        error_logger.addFilter(_not_injected_drop)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn calls sys.exit() when it cannot bind
            failure.append(exc)

    thread = threading.Thread(target=run, name="polyfuse-testing-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            cause = failure[0] if failure else None
            raise RuntimeError(
                f"uvicorn did not start on {host}:{port} (see its log for the reason)"
            ) from cause
        time.sleep(0.002)
    bound_port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield ServedApp(app=app, host=host, port=bound_port, server=server)
    finally:
        release = getattr(app, "release_waiters", None)
        if callable(release):
            release()
        server.should_exit = True
        thread.join(5)
