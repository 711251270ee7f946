"""Errors in the OpenAI wire shape, and how polyfuse errors map onto HTTP statuses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import (
    AggregationError,
    BackendError,
    InvalidRequestError,
    NoCandidatesError,
    PolyfuseError,
)
from ..redaction import Redactor, client_reason, upstream_status

__all__ = ["APIError", "Redactor", "error_body", "from_polyfuse_error"]

_STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
}


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


def from_polyfuse_error(exc: PolyfuseError, redact: Redactor) -> APIError:
    """The HTTP answer for a polyfuse error raised while serving a request.

    Upstream text never reaches the client: each failure is told as the endpoint's name, its
    HTTP status and a short reason of our own (:func:`polyfuse.redaction.client_reason`); the
    full text, redacted, is in the server log.

    * :class:`InvalidRequestError` → 400 (our own validation text, redacted).
    * :class:`NoCandidatesError` → 400 when every candidate was refused with 400/422 (the
      request is at fault), else 502; the message lists each candidate's short reason.
    * :class:`AggregationError` and other backend failures → 502.
    """
    if isinstance(exc, InvalidRequestError):
        return APIError(400, redact(str(exc)))
    if isinstance(exc, NoCandidatesError):
        reasons = [
            (redact(label), client_reason(_text(err), redact), upstream_status(_text(err)))
            for label, err in exc.failures
        ]
        lines = "; ".join(f"{label}: {text}" for label, text, _ in reasons)
        if reasons and all(status in (400, 422) for _, _, status in reasons):
            return APIError(
                400,
                f"every candidate endpoint rejected the request: {lines} "
                "(the server log has the endpoints' own messages)",
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
            502,
            f"aggregation failed: {client_reason(str(exc), redact)}",
            type="server_error",
            code="aggregation",
        )
    if isinstance(exc, BackendError):
        return APIError(
            502,
            f"upstream failure: {client_reason(str(exc), redact)}",
            type="server_error",
            code="upstream",
        )
    return APIError(500, client_reason(f"{type(exc).__name__}: {exc}", redact), type="server_error")


def _text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"
