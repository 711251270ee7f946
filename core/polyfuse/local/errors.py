"""The error the embedded model raises."""

from __future__ import annotations

from ..errors import PolyfuseError

__all__ = ["LocalModelError"]


class LocalModelError(PolyfuseError):
    """The embedded model could not be obtained, verified, started or reached.

    The message says what went wrong and what to do (reinstall, free a port, pass a GGUF path).
    """
