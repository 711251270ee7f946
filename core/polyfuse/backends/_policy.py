"""The one retry and error policy of polyfuse's HTTP calls (see :mod:`polyfuse.transport`)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BackendError,
    status_error_for,
)
from ._http import TransportError
from ._wire import error_message, retry_after_seconds

__all__ = ["RetryPolicy", "backend_error", "status_error"]

logger = logging.getLogger("polyfuse")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before sending a failed request again.

    Retryable failures (429, 5xx, connection failures, timeouts; see :mod:`polyfuse.errors`)
    are retried up to ``max_retries`` times, after ``backoff_base * 2**attempt`` seconds (at most
    ``backoff_max``, with jitter), or after the server's ``Retry-After`` when it says so (given
    up when it asks for more than ``max_retry_after``).
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, exc: BackendError, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt + 1`` after ``exc``; None: give up."""
        if not exc.retryable or attempt >= self.max_retries:
            return None
        retry_after: float | None = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling * (0.5 + random.random() / 2)

    def log(self, endpoint: str, exc: BackendError, attempt: int, delay: float) -> None:
        """Log that retry ``attempt + 1`` follows ``exc`` in ``delay`` seconds."""
        logger.info(
            "%s: %s; retry %d/%d in %.2fs",
            endpoint,
            type(exc).__name__,
            attempt + 1,
            self.max_retries,
            delay,
        )


def backend_error(exc: TransportError, endpoint: str) -> BackendError:
    """The polyfuse error for a failure below HTTP statuses."""
    if exc.timeout:
        return APITimeoutError(f"timed out ({exc.kind})", endpoint=endpoint)
    text = str(exc)
    message = f"{exc.kind}: {text}" if text else exc.kind
    return APIConnectionError(message, endpoint=endpoint)


def status_error(
    status: int, body: bytes | bytearray, retry_after: str | None, endpoint: str
) -> APIStatusError:
    """The typed :class:`~polyfuse.errors.APIStatusError` for an HTTP error answer."""
    message, decoded = error_message(body, status)
    return status_error_for(
        status,
        message,
        endpoint=endpoint,
        body=decoded,
        retry_after=retry_after_seconds(retry_after),
    )
