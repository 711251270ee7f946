"""Errors in the OpenAI wire shape, and how polyfuse errors map onto HTTP statuses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import (
    AggregationError,
    BackendError,
    InvalidRequestError,
    NoCandidatesError,
    PolyfuseError,
)

__all__ = ["APIError", "Redactor", "error_body", "from_polyfuse_error"]

_STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# The core formats every HTTP failure of an endpoint as "[endpoint] HTTP 401: server text".
_STATUS_MESSAGE = re.compile(r"\[(?P<endpoint>[^\]]*)\] HTTP (?P<status>\d{3}):")


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, the shape OpenAI clients parse."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class APIError(Exception):
    """An HTTP error answered in the OpenAI shape.

    Attributes:
        status_code: the HTTP status.
        message / type / param / code: the fields of the error object.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type or _STATUS_TYPES.get(status_code, "server_error")
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def encoded(self) -> bytes:
        """The JSON body, encoded."""
        return json.dumps(self.body(), ensure_ascii=False).encode()


class Redactor:
    """Removes known secrets (upstream and server API keys) from text sent to clients."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _sanitised(error: BaseException | str, redact: Redactor) -> tuple[str, int]:
    """The text of an upstream failure safe to show a client, and its HTTP status (0: none)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    status = 0
    match = _STATUS_MESSAGE.search(text)
    if match:
        status = int(match["status"])
        if status in (401, 403):
            # The upstream's own text may echo part of our key: say only what happened.
            text = (
                f"[{match['endpoint']}] HTTP {status}: the endpoint rejected the server's "
                "credentials; check its api_key_env in the presets file"
            )
    return redact(text), status


def from_polyfuse_error(exc: PolyfuseError, redact: Redactor) -> APIError:
    """The HTTP answer for a polyfuse error raised while serving a request.

    * :class:`InvalidRequestError` → 400.
    * :class:`NoCandidatesError` → 400 when every candidate was refused with 400/422 (the
      request is at fault), else 502; the message lists each candidate's reason, with the text
      of upstream authentication failures and every known key removed.
    * :class:`AggregationError` and other backend failures → 502.
    """
    if isinstance(exc, InvalidRequestError):
        return APIError(400, redact(str(exc)))
    if isinstance(exc, NoCandidatesError):
        reasons = [(label, *_sanitised(err, redact)) for label, err in exc.failures]
        lines = "; ".join(f"{label}: {text}" for label, text, _ in reasons)
        if reasons and all(status in (400, 422) for _, _, status in reasons):
            return APIError(
                400,
                f"every candidate endpoint rejected the request: {lines}",
                code="upstream_rejected_request",
            )
        return APIError(
            502,
            f"all {len(reasons)} candidates failed: {lines}",
            type="server_error",
            code="no_candidates",
        )
    if isinstance(exc, AggregationError):
        return APIError(
            502, f"aggregation failed: {redact(str(exc))}", type="server_error", code="aggregation"
        )
    if isinstance(exc, BackendError):
        text, _ = _sanitised(str(exc), redact)
        return APIError(502, f"upstream failure: {text}", type="server_error", code="upstream")
    return APIError(500, redact(f"{type(exc).__name__}: {exc}"), type="server_error")
