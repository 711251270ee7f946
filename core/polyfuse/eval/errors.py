"""Errors of ``polyfuse eval``: unusable data, pools or settings."""

from __future__ import annotations

from ..errors import InvalidRequestError

__all__ = ["EvalConfigError", "EvalDataError"]


class EvalDataError(InvalidRequestError):
    """An eval set or pools file cannot be used: missing, unreadable, or without what it needs."""


class EvalConfigError(InvalidRequestError):
    """The strategies, graders, judge or panel are misconfigured."""
