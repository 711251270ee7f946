"""Run the fusion server with uvicorn: what ``polyfuse serve`` calls."""

from __future__ import annotations

from pathlib import Path

from ..presets import PresetRegistry, load_config
from .app import create_app
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


def run_server(config: Path | str, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the presets in ``config`` until interrupted (SIGINT/SIGTERM).

    On shutdown the server stops accepting connections and lets requests in flight finish
    for up to ``[server] shutdown_timeout_s`` seconds before cancelling them.
    """
    import uvicorn

    registry, settings = settings_for(config, host=host, port=port)
    app = create_app(registry, settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        lifespan="on",
    )
