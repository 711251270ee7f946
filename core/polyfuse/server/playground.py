"""The fusion playground: a static page served by ``polyfuse serve`` at ``/`` and
``/playground``.

The page is plain files in ``static/`` (no build step, no third-party code): it lists the
presets from ``/v1/models``, sends chats to ``/v1/fusion/events`` and draws the events. Every
playground response carries a strict Content-Security-Policy: scripts and styles only from
this server, no inline code, no framing, requests only to this origin. Model output is
untrusted: the page only ever sets it as text.

The routes are fixed paths (no directory listing, no redirects, no trailing slashes), so they
behave the same behind any path normalisation in front of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "PLAYGROUND_PATH", "STATIC_DIR", "add_playground"]

PLAYGROUND_PATH = "/playground"
STATIC_DIR = Path(__file__).parent / "static"

ASSETS: dict[str, str] = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
"""The files served under ``/playground/`` and their media types (nothing else is)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str, media_type: str) -> Response:
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)


def _route(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    # A closure, not default arguments: FastAPI would read those from the query string.
    async def serve_file() -> Response:
        return _file(name, media_type)

    return serve_file


def add_playground(app: FastAPI) -> None:
    """Serve the playground page at ``GET /`` and ``GET /playground``, and its two assets at
    ``GET /playground/<name>``."""
    page = _route("index.html", "text/html; charset=utf-8")
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route(PLAYGROUND_PATH, page, methods=["GET"], include_in_schema=False)
    for name, media_type in ASSETS.items():
        app.add_api_route(
            f"{PLAYGROUND_PATH}/{name}",
            _route(name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )
