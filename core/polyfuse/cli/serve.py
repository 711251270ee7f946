"""``polyfuse serve``: run the OpenAI-compatible fusion server on a presets file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError

__all__ = ["register", "serve_command"]

_SERVER_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def serve_command(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Presets file (TOML): endpoints, presets and an optional \\[server] table.",
            dir_okay=False,
        ),
    ],
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind (default: \\[server] host, else 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to bind (default: \\[server] port, else 8090; 0 = any free)."),
    ] = None,
    eval_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval-dir",
            help="A polyfuse eval output directory: the playground links its report.html, "
            "served at /eval.",
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ] = None,
) -> None:
    """Serve every preset as an OpenAI model named fusion/<preset>.

    Point any OpenAI client at http://HOST:PORT/v1, or a browser at http://HOST:PORT/ for the
    fusion playground. Ctrl-C drains requests in flight.
    """
    missing = [name for name in _SERVER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidRequestError(
            f"polyfuse serve needs {', '.join(missing)}: pip install '.[server]' in a polyfuse checkout"
        )
    from ..server import run_server

    run_server(config, host=host, port=port, eval_dir=eval_dir)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``polyfuse`` app."""
    app.command("serve")(serve_command)
