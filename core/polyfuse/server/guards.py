"""HTTP-level guards of ``polyfuse serve``, as ASGI middleware (outermost first):

* :class:`ErrorShapeMiddleware`: every reply gets ``X-Content-Type-Options: nosniff`` and
  ``Cache-Control: no-store``; every error, whoever produced it (a route, CORS, an exception),
  leaves in the OpenAI shape; an exception is logged once, redacted, not twice by uvicorn.
* :class:`HostGuardMiddleware`: the ``Host`` check against DNS rebinding (a keyless server
  answers loopback host names only), and trailing slashes served in place, never redirected
  (a redirect would echo the request's ``Host``).
* :class:`BodyGuardMiddleware`: POSTs must be ``application/json``; the body is read with a
  deadline (408) and a size limit (413) *before* the request takes a concurrency slot, so
  clients that send headers and stall cannot hold slots.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from .asgi import (
    SECURITY_HEADERS,
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    send_error,
)
from .auth import AuthMiddleware, BearerAuth
from .errors import APIError
from .limits import ConcurrencyLimiter, ConcurrencyLimitMiddleware, read_body
from .metrics import ServerMetrics
from .settings import ServerSettings

__all__ = [
    "BODY_PATHS",
    "BodyGuardMiddleware",
    "ErrorShapeMiddleware",
    "HostGuardMiddleware",
    "add_guards",
    "is_loopback_host",
]

logger = logging.getLogger("polyfuse.server")

# The default fusion routes: bodies read (with a deadline) before they take a concurrency slot.
BODY_PATHS = frozenset({"/v1/chat/completions"})
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
_MAX_ERROR_TEXT = 500


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


class ErrorShapeMiddleware:
    """Security headers on every reply; every error in the OpenAI shape (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        rewrite: dict[str, Any] | None = None  # the start message of a non-JSON error
        buffered: list[bytes] = []

        async def shaped_send(message: Message) -> None:
            nonlocal started, rewrite
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in _SECURITY_NAMES
                ]
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if message["status"] >= 400 and not content_type.startswith(b"application/json"):
                    rewrite = dict(message)
                    return
                await send(message)
                return
            if rewrite is not None and message["type"] == "http.response.body":
                buffered.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await send_error(send, _shaped(rewrite, b"".join(buffered)))
                return
            await send(message)

        try:
            await self.app(scope, receive, shaped_send)
            if not started:  # an app that answered nothing (a gone client is not sent to)
                await send_error(
                    send,
                    APIError(500, "the server sent no answer; see the server log"),
                )
        except Exception as exc:
            # Starlette re-raises after its handler answered (and logged); log only what no
            # handler saw, and never let uvicorn print a second, unredacted traceback.
            if started:
                return
            logger.error("internal error while answering", exc_info=exc)
            await send_error(
                send,
                APIError(500, "internal server error; see the server log", type="server_error"),
            )


def _shaped(start: dict[str, Any], body: bytes) -> APIError:
    """A plain-text error reply (CORS, a framework default) as an :class:`APIError`."""
    status: int = start["status"]
    text = body.decode("utf-8", "replace").strip()[:_MAX_ERROR_TEXT] or f"HTTP {status}"
    keep = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in start.get("headers", [])
        if k.lower() in (b"allow", b"retry-after", b"www-authenticate", b"vary")
        or k.lower().startswith(b"access-control-")
    }
    return APIError(status, text, headers=keep)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``*.localhost`` and loopback IP addresses (any port)."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8090
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    name = host.strip().lower()
    if name.startswith("["):
        return name[: name.find("]") + 1] if "]" in name else name
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


class HostGuardMiddleware:
    """Refuses requests whose ``Host`` is not allowed (403); strips trailing slashes.

    With ``allowed_hosts`` empty and ``loopback_only`` set (a server without keys), only
    loopback host names pass: a web page on another site that rebinds its DNS name to
    127.0.0.1 still sends its own name as ``Host`` and is refused.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Collection[str] = (),
        loopback_only: bool = False,
        on_reject: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.allowed = frozenset(h.strip().lower() for h in allowed_hosts)
        self.loopback_only = loopback_only
        self.on_reject = on_reject

    def _allowed(self, host: str) -> bool:
        if self.allowed:
            return (
                "*" in self.allowed or _host_name(host) in self.allowed or (is_loopback_host(host))
            )
        return not self.loopback_only or is_loopback_host(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is not None and not self._allowed(host.decode("latin-1")):
            if self.on_reject is not None:
                self.on_reject(403)
            await send_error(
                send,
                APIError(
                    403,
                    "this Host is not allowed: a server without API keys answers loopback "
                    "names only (localhost, 127.0.0.1, [::1]); set api_keys_env, or list the "
                    "name in [server] allowed_hosts",
                    type="permission_error",
                    code="host_not_allowed",
                ),
            )
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/") or "/")
        await self.app(scope, receive, send)


class BodyGuardMiddleware:
    """Content-Type check for every POST; for ``paths``, the body read with a deadline.

    The inner app receives the whole body as one message, then the real ``receive`` (so it
    still sees the client disconnect).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: frozenset[str],
        max_body_bytes: int,
        body_timeout_s: float,
        on_reject: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.on_reject = on_reject

    async def _refuse(self, send: Send, error: APIError) -> None:
        if self.on_reject is not None:
            self.on_reject(error.status_code)
        await send_error(send, error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            await self._refuse(
                send,
                APIError(
                    415,
                    "send the request body as JSON with the header "
                    "'Content-Type: application/json'",
                    code="unsupported_media_type",
                ),
            )
            return
        if scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(
                read_body(receive, scope["headers"], self.max_body_bytes), self.body_timeout_s
            )
        except TimeoutError:
            await self._refuse(
                send,
                APIError(
                    408,
                    f"the request body did not arrive within {self.body_timeout_s:g}s "
                    "([server] body_timeout_s)",
                    code="request_timeout",
                    headers={"Connection": "close"},
                ),
            )
            return
        except APIError as exc:
            exc.headers.setdefault("Connection", "close")  # the rest of the body is unread
            await self._refuse(send, exc)
            return
        except ClientDisconnected:  # nobody to answer; counted as nginx's "client closed"
            if self.on_reject is not None:
                self.on_reject(499)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def add_guards(
    app: Starlette,
    settings: ServerSettings,
    *,
    keys: Sequence[SecretStr],
    limiter: ConcurrencyLimiter,
    metrics: ServerMetrics,
    body_paths: frozenset[str] = BODY_PATHS,
) -> None:
    """Install every guard on ``app``. Outermost first when a request comes in: error shape
    and security headers, Host check, CORS, auth, Content-Type and body (deadline, size),
    then the concurrency slot (taken only once the body is in).

    ``body_paths``: the POST routes that run fusions: their bodies are read with the deadline
    before they take a concurrency slot, and only they take slots.
    """
    app.add_middleware(
        ConcurrencyLimitMiddleware,
        limiter=limiter,
        paths=body_paths,
        retry_after_s=settings.retry_after_s,
        on_reject=metrics.rejected,
    )
    app.add_middleware(
        BodyGuardMiddleware,
        paths=body_paths,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        on_reject=metrics.rejected,
    )
    if keys:
        app.add_middleware(AuthMiddleware, auth=BearerAuth(keys), on_reject=metrics.rejected)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(
        HostGuardMiddleware,
        allowed_hosts=settings.allowed_hosts,
        loopback_only=not keys,
        on_reject=metrics.rejected,
    )
    app.add_middleware(ErrorShapeMiddleware)
