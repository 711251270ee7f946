"""The fusion playground: a static page served by ``polyfuse serve`` at ``/playground/``.

The page is plain files in ``static/`` (no build step, no third-party code): it lists the
presets from ``/v1/models``, sends chats to ``/v1/fusion/events`` and draws the events. Every
response under ``/playground/`` carries a strict Content-Security-Policy: scripts and styles
only from this server, no inline code, no framing, requests only to this origin. Model output
is untrusted: the page only ever sets it as text.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from .asgi import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "PLAYGROUND_PATH", "STATIC_DIR", "add_playground"]

PLAYGROUND_PATH = "/playground"
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class SecurityHeaders:
    """Adds the playground's security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = headers + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_playground(app: FastAPI) -> None:
    """Serve the playground at ``/playground/`` and send ``GET /`` there."""
    static = StaticFiles(directory=STATIC_DIR, html=True)
    app.mount(PLAYGROUND_PATH, SecurityHeaders(static), name="playground")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:  # pyright: ignore[reportUnusedFunction]
        return RedirectResponse(PLAYGROUND_PATH + "/", status_code=307)
