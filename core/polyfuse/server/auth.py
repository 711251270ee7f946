"""Bearer-token authentication for the ``/v1`` routes (constant-time key comparison)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from pydantic import SecretStr

from .asgi import ASGIApp, Receive, Scope, Send, send_error
from .errors import APIError

__all__ = ["AuthMiddleware", "BearerAuth"]


class BearerAuth:
    """Checks ``Authorization: Bearer <key>`` against the accepted keys.

    Every key is compared with :func:`hmac.compare_digest`, and all of them are always
    compared, so the time taken says nothing about which key (or how much of one) matched.
    """

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._keys = [k.get_secret_value().encode() for k in keys]

    def __repr__(self) -> str:
        return f"BearerAuth(<{len(self._keys)} keys>)"

    def check(self, authorization: bytes | None) -> APIError | None:
        """None when ``authorization`` carries an accepted key, else the 401 to answer."""
        if not authorization:
            return _unauthorized("Missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return _unauthorized("Malformed Authorization header: expected 'Bearer <key>'")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(token, key)
        return None if matched else _unauthorized("Incorrect API key provided")


def _unauthorized(message: str) -> APIError:
    return APIError(
        401,
        message,
        type="invalid_request_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


class AuthMiddleware:
    """Refuses requests under ``prefix`` (default ``/v1/``) that lack an accepted key.

    ``on_reject`` is called with the status of each refusal (for metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        auth: BearerAuth,
        prefix: str = "/v1/",
        on_reject: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.prefix = prefix
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            error = self.auth.check(header)
            if error is not None:
                if self.on_reject is not None:
                    self.on_reject(error.status_code)
                await send_error(send, error)
                return
        await self.app(scope, receive, send)
