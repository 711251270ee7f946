"""Errors of ``polyfuse distill``: bad input, unusable output, and rows that make no record."""

from __future__ import annotations

from ..errors import InvalidRequestError, PolyfuseError

__all__ = [
    "DistillConfigError",
    "DistillInputError",
    "DistillOutputError",
    "RecordError",
]


class DistillInputError(InvalidRequestError):
    """The prompts file cannot be used: missing, unreadable, or without a usable prompt."""


class DistillOutputError(InvalidRequestError):
    """The output or errors file cannot be written, or holds records it should not."""


class DistillConfigError(InvalidRequestError):
    """The teachers, fusor, judge, format or prices are misconfigured."""


class RecordError(PolyfuseError):
    """A row's answers cannot make a record of the chosen format (e.g. no preference pair).

    The row goes to the errors file with this message; the others go on.
    """
