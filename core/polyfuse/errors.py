"""Typed errors raised by polyfuse.

Every error polyfuse raises derives from :class:`PolyfuseError`::

    PolyfuseError
    ├── InvalidRequestError (also ValueError)   bad input caught at the edge, before any call
    ├── BackendError                            a call to one endpoint failed
    │   ├── APIStatusError                      the server answered with an HTTP error
    │   │   ├── BadRequestError       400/422  (not retried)
    │   │   ├── AuthenticationError   401/403  (not retried)
    │   │   ├── NotFoundError         404      (not retried)
    │   │   ├── RateLimitError        429      (retried, honours Retry-After)
    │   │   └── ServerError           5xx      (retried)
    │   ├── APITimeoutError                     connect/read/total timeout (retried)
    │   ├── APIConnectionError                  connection refused/reset/dropped (retried)
    │   └── ProtocolError                       malformed JSON or SSE, wrong number of choices
    ├── NoCandidatesError                       every candidate of a fusion failed
    └── AggregationError                        the aggregator failed and no fallback was allowed

Messages name the endpoint and carry the server's own message; they never include an API key
or a full prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AggregationError",
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "InvalidRequestError",
    "NoCandidatesError",
    "NotFoundError",
    "PolyfuseError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
]


class PolyfuseError(Exception):
    """Root of every error raised by polyfuse."""


class InvalidRequestError(PolyfuseError, ValueError):
    """The request or configuration is invalid; the message says what to change."""

    @classmethod
    def from_validation_error(cls, exc: ValidationError, what: str) -> InvalidRequestError:
        """``invalid <what>: field: problem; ...`` from a pydantic validation error."""
        from ._validation import describe_validation_error

        return cls(f"invalid {what}: {describe_validation_error(exc)}")


class BackendError(PolyfuseError):
    """A call to one backend failed.

    Attributes:
        endpoint: the backend's name (never its key).
        retryable: whether retrying the same call may succeed.
        retries: how many times the call was sent again before this error was raised.
    """

    retryable: bool = False
    retries: int = 0

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(f"[{endpoint}] {message}")
        self.endpoint = endpoint
        self.detail = message


class APIStatusError(BackendError):
    """The server answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status.
        body: the decoded error body (JSON when the server sent JSON, else text), truncated.
        retry_after: seconds the server asked us to wait, if it said so.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status_code: int,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}: {message}", endpoint=endpoint)
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after
        self.server_message = message


class BadRequestError(APIStatusError):
    """400/422: the server rejected the request; fix the request (not retried)."""


class AuthenticationError(APIStatusError):
    """401/403: missing or wrong API key (not retried)."""


class NotFoundError(APIStatusError):
    """404: wrong URL or unknown model (not retried)."""


class RateLimitError(APIStatusError):
    """429: the server is rate limiting us (retried with backoff, honouring Retry-After)."""

    retryable = True


class ServerError(APIStatusError):
    """5xx: the server failed (retried with backoff)."""

    retryable = True


class APITimeoutError(BackendError):
    """The call exceeded its connect, read or total timeout."""

    retryable = True


class APIConnectionError(BackendError):
    """The connection could not be made or was dropped."""

    retryable = True


class ProtocolError(BackendError):
    """The server broke the OpenAI protocol: malformed JSON or SSE, wrong number of choices."""


class NoCandidatesError(PolyfuseError):
    """No candidate of a fusion succeeded.

    Attributes:
        failures: one ``(candidate label, error)`` pair per candidate.
    """

    def __init__(self, failures: Sequence[tuple[str, BaseException | str]]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {label}: {_describe(err)}" for label, err in self.failures)
        super().__init__(
            f"all {len(self.failures)} candidates failed; nothing to aggregate:\n{lines}"
        )


class AggregationError(PolyfuseError):
    """The aggregation step failed (and, when raised to you, no fallback was allowed).

    Attributes:
        record: the aggregator's partial record (its calls and their usage), when available.
    """

    def __init__(self, message: str, *, record: Any = None) -> None:
        super().__init__(message)
        self.record = record


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or error.__class__.__name__
    return f"{error.__class__.__name__}: {text}"


def status_error_for(
    status_code: int,
    message: str,
    *,
    endpoint: str,
    body: Any = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the typed error that matches an HTTP status code."""
    cls: type[APIStatusError]
    if status_code in (400, 413, 422):
        cls = BadRequestError
    elif status_code in (401, 403):
        cls = AuthenticationError
    elif status_code == 404:
        cls = NotFoundError
    elif status_code == 429:
        cls = RateLimitError
    elif status_code >= 500 or status_code in (408, 409, 424):
        cls = ServerError
    else:
        cls = APIStatusError
    return cls(
        message, endpoint=endpoint, status_code=status_code, body=body, retry_after=retry_after
    )
