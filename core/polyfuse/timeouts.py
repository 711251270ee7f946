"""What ``timeout=`` means everywhere in polyfuse.

``timeout`` takes what httpx's does: **a number of seconds** or **a Timeout-like object** (an
``httpx.Timeout``, or anything with ``connect``/``read``/``write``/``pool`` attributes).

* A number is a *total*: the most seconds the call it is given to may take, end to end.
  Where endpoints are built (``ChatFusion``, a presets file's ``[endpoints.*]``), that is one
  request attempt to an endpoint (``total_timeout``); on ``Fusion.run``/``arun``/``stream``/
  ``astream`` and ``FusionLLM``, the whole fusion (candidates and aggregation).
* A Timeout-like object sets the phases of each HTTP request: ``connect`` →
  ``connect_timeout``, ``read`` (and ``write``) → ``read_timeout``. It applies where
  endpoints are built; a fusion as a whole has no phases, so ``Fusion.run`` takes a number.

The specific settings (``connect_timeout``, ``read_timeout``, ``total_timeout`` on
:class:`~polyfuse.EndpointConfig`) are kept for fine control.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidRequestError

__all__ = ["TimeoutLike", "TimeoutValue", "check_total", "endpoint_timeouts"]


@runtime_checkable
class TimeoutLike(Protocol):
    """Per-phase timeouts in seconds (``None``: no limit), as ``httpx.Timeout`` has them."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


TimeoutValue = float | TimeoutLike
"""A ``timeout=`` argument: seconds in total, or a :class:`TimeoutLike`."""


def check_total(timeout: object, *, where: str = "timeout") -> float:
    """``timeout`` as a positive number of seconds, or :class:`InvalidRequestError`."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidRequestError(
            f"{where} must be a number of seconds here (got {type(timeout).__name__}); "
            "per-phase timeouts (httpx.Timeout) belong to the endpoints"
        )
    if not math.isfinite(timeout) or timeout <= 0:
        raise InvalidRequestError(f"{where} must be > 0 seconds (got {timeout!r})")
    return float(timeout)


def endpoint_timeouts(timeout: TimeoutValue | None, *, where: str = "timeout") -> dict[str, Any]:
    """The :class:`~polyfuse.EndpointConfig` settings that ``timeout`` stands for."""
    if timeout is None:
        return {}
    if isinstance(timeout, TimeoutLike):
        settings: dict[str, Any] = {}
        if timeout.connect is not None:
            settings["connect_timeout"] = check_total(timeout.connect, where=f"{where}.connect")
        read = timeout.read if timeout.read is not None else timeout.write
        settings["read_timeout"] = (
            None if read is None else check_total(read, where=f"{where}.read")
        )
        return settings
    return {"total_timeout": check_total(timeout, where=where)}
