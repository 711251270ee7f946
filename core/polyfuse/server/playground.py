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
from starlette.responses import FileResponse, JSONResponse, Response

from .chat import error_response
from .errors import APIError

__all__ = [
    "ASSETS",
    "CONTENT_SECURITY_POLICY",
    "EVAL_PATH",
    "PLAYGROUND_PATH",
    "REPORT_CONTENT_SECURITY_POLICY",
    "STATIC_DIR",
    "add_playground",
]

PLAYGROUND_PATH = "/playground"
EVAL_PATH = "/eval"
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

# The eval report is one self-contained file: inline styles and data: images, no script at all.
REPORT_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
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


def _eval_report(eval_dir: Path) -> Callable[[], Awaitable[Response]]:
    report = eval_dir / "report.html"

    async def serve_report() -> Response:
        if not report.is_file():
            return error_response(
                APIError(
                    404,
                    f"no eval report yet: {report} does not exist; run "
                    f"'polyfuse eval ... --output {eval_dir}' to make it",
                    code="no_eval_report",
                )
            )
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": REPORT_CONTENT_SECURITY_POLICY}
        return FileResponse(report, media_type="text/html; charset=utf-8", headers=headers)

    return serve_report


def add_playground(app: FastAPI, *, eval_dir: Path | None = None) -> None:
    """Serve the playground page at ``GET /`` and ``GET /playground``, its two assets at
    ``GET /playground/<name>``, and what the page should link at
    ``GET /playground/config.json``.

    With ``eval_dir`` (a ``polyfuse eval`` output directory), its ``report.html`` is served at
    ``GET /eval`` (script-free CSP) and the page links it; without, the page links nothing.
    """
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
    config = {"eval_report": EVAL_PATH if eval_dir is not None else None}

    async def page_config() -> Response:
        return JSONResponse(config, headers=SECURITY_HEADERS)

    app.add_api_route(
        f"{PLAYGROUND_PATH}/config.json", page_config, methods=["GET"], include_in_schema=False
    )
    if eval_dir is not None:
        app.add_api_route(
            EVAL_PATH, _eval_report(eval_dir), methods=["GET"], include_in_schema=False
        )
