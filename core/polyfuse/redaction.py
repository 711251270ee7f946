"""One redaction path for text that leaves the process: replies to clients and log lines.

Two things are removed:

* **Secrets.** Every known key (registered with :meth:`Redactor.add`), fragments of them
  (an upstream that says ``key sk-abc123...`` echoes a prefix), ``Bearer``/``Basic``
  credentials and ``api_key=...``-style pairs. The text that follows ``HTTP 401:`` or
  ``HTTP 403:`` is dropped whole: an upstream refusing our credentials often quotes them.
* **Upstream text, for clients.** :func:`client_reason` turns a failure message into the
  endpoint name, the HTTP status and a short reason of our own. The upstream's own words
  (which may hold internal hosts, passwords or quotes of the request) stay in the server log,
  redacted.

:data:`LOG_REDACTOR` is the process-wide redactor behind :class:`RedactingFilter`;
:func:`install_log_redaction` puts that filter on the ``polyfuse`` loggers (and uvicorn's),
so every record they emit is scrubbed before any handler formats it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

__all__ = [
    "LOG_FILTER",
    "LOG_REDACTOR",
    "REDACTED",
    "RedactingFilter",
    "Redactor",
    "StreamScrubber",
    "client_reason",
    "install_log_redaction",
    "status_reason",
    "upstream_status",
]

REDACTED = "***"
_MIN_SECRET = 4  # shorter "secrets" would redact ordinary words
_MIN_FRAGMENT = 8  # an echoed key prefix this long is still a leak
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{4,}")
_KEY_PAIR = re.compile(
    r"(?i)\b(api[_-]?key|x-api-key|access[_-]?token|secret|password|authorization)"
    r"(\"?'?\s*[:=]\s*\"?'?)(?!\*\*\*)[^\s\"',;&]+"
)
_CREDENTIALS_REASON = "the endpoint rejected the server's credentials; check its api_key_env"
_AUTH_DROPPED = "(the endpoint rejected the credentials; its reply is not shown)"
# Our own reasons after "HTTP 401:" are kept, so that redacting twice changes nothing.
_AUTH_REFUSAL = re.compile(
    rf"(HTTP 40[13]):(?! {re.escape(_CREDENTIALS_REASON)}| {re.escape(_AUTH_DROPPED)})[^\n]*"
)
# Runs of key-alphabet characters; punctuation ends one, so "key=sk-ab12..." yields "sk-ab12".
_TOKEN = re.compile(rf"[A-Za-z0-9_\-]{{{_MIN_FRAGMENT},}}")


class Redactor:
    """Scrubs secrets from text: known keys and their fragments, credentials, key pairs.

    Thread-safe to extend (:meth:`add`) while in use; calling it never raises.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._exact: re.Pattern[str] | None = None
        self.add(secrets)

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secrets>)"

    def add(self, secrets: Iterable[str]) -> None:
        """Also scrub ``secrets`` (values shorter than 4 characters are ignored)."""
        fresh = {s for s in secrets if len(s) >= _MIN_SECRET}
        with self._lock:
            merged = sorted(set(self._secrets) | fresh, key=len, reverse=True)
            self._secrets = tuple(merged)
            self._exact = re.compile("|".join(re.escape(s) for s in merged)) if merged else None

    def __call__(self, text: str) -> str:
        exact, secrets = self._exact, self._secrets
        if exact is not None:
            text = exact.sub(REDACTED, text)
            text = _TOKEN.sub(lambda m: _fragment(m.group(0), secrets), text)
        text = _AUTH_REFUSAL.sub(lambda m: f"{m.group(1)}: {_AUTH_DROPPED}", text)
        text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        return _KEY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)

    def keys(self, text: str) -> str:
        """Only the known keys scrubbed, exactly: for model text (answers, tool arguments),
        where a ``Bearer YOUR_TOKEN`` in a code sample or ``HTTP 401:`` in an explanation is
        content, not a leak."""
        exact, secrets = self._exact, self._secrets
        if exact is None or not any(secret in text for secret in secrets):
            return text  # the common case, without a regex pass
        return exact.sub(REDACTED, text)

    def key_prefix_length(self, text: str) -> int:
        """The length of the longest tail of ``text`` that is the start of a known key."""
        best = 0
        for secret in self._secrets:
            tail = text[-(len(secret) - 1) :] if len(secret) > 1 else ""
            start = tail.find(secret[0])  # a key start can only begin where its first char is
            while start != -1 and len(tail) - start > best:
                if secret.startswith(tail[start:]):
                    best = len(tail) - start
                    break
                start = tail.find(secret[0], start + 1)
        return best

    def json(self, value: Any, *, model_text: bool = False) -> Any:
        """``value`` (decoded JSON) with every string in it redacted (with
        ``model_text``, known keys only: see :meth:`keys`)."""
        if isinstance(value, str):
            return self.keys(value) if model_text else self(value)
        if isinstance(value, list):
            return [self.json(v, model_text=model_text) for v in value]  # pyright: ignore[reportUnknownVariableType]
        if isinstance(value, dict):
            return {k: self.json(v, model_text=model_text) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
        return value


class StreamScrubber:
    """Scrubs known keys from text that arrives in pieces (a streamed answer), where a key
    may be split across pieces.

    Each piece is emitted at once except for the shortest tail that could be the start of a
    known key; that tail waits for the next piece. Without keys nothing is ever held back.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text that is safe to send now."""
        text = self._redactor.keys(self._held + piece)
        keep = self._redactor.key_prefix_length(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep] if keep else text

    def flush(self) -> str:
        """What was held back, at the end of the text (a long key prefix is scrubbed)."""
        held, self._held = self._held, ""
        return REDACTED if len(held) >= _MIN_FRAGMENT else held


def _fragment(token: str, secrets: tuple[str, ...]) -> str:
    """``token`` unless it is a long-enough piece of a known secret."""
    for secret in secrets:
        if len(secret) >= 2 * _MIN_SECRET and token in secret:
            return REDACTED
    return token


# --------------------------------------------------------------------------- client text

# A BackendError renders as "[endpoint] HTTP 503: upstream text" or "[endpoint] upstream text".
_UPSTREAM = re.compile(r"\[(?P<endpoint>[^\]\n]{1,100})\] (?:HTTP (?P<status>\d{3})\b)?")
_STATUS_REASONS: dict[int, str] = {
    400: "the endpoint rejected the request as invalid",
    401: _CREDENTIALS_REASON,
    403: _CREDENTIALS_REASON,
    404: "the endpoint does not know this model or route",
    408: "the endpoint timed out",
    413: "the request is too large for the endpoint",
    422: "the endpoint rejected the request as invalid",
    429: "the endpoint is rate limiting the server",
    504: "the endpoint timed out",
}
_KEYWORD_REASONS: tuple[tuple[str, str], ...] = (
    ("timeout", "the endpoint timed out"),
    ("timed out", "the endpoint timed out"),
    ("cancel", "the call was cancelled"),
    ("connect", "the endpoint could not be reached"),
    ("malformed", "the endpoint sent a malformed reply"),
    ("protocol", "the endpoint sent a malformed reply"),
    ("choices", "the endpoint sent a malformed reply"),
)
_MAX_OWN_TEXT = 300


def status_reason(status: int) -> str:
    """A short reason of our own for an upstream HTTP status."""
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    return (
        "the endpoint failed (server error)" if status >= 500 else "the endpoint refused the call"
    )


def client_reason(text: str, redact: Redactor) -> str:
    """A failure message safe to show a client.

    Everything from the first ``[endpoint]`` marker on is upstream-derived: it is replaced by
    the endpoint's name, the HTTP status when there is one, and a short reason of our own
    (``[fake] HTTP 503: the endpoint failed (server error)``). Text before it (our own words,
    such as an exception type) is kept, redacted and shortened.
    """
    match = _UPSTREAM.search(text)
    if match is None:
        own = redact(text)
        return own if len(own) <= _MAX_OWN_TEXT else own[: _MAX_OWN_TEXT - 3] + "..."
    head = redact(text[: match.start()])[:_MAX_OWN_TEXT]
    endpoint = redact(match["endpoint"])
    if match["status"]:
        status = int(match["status"])
        return f"{head}[{endpoint}] HTTP {status}: {status_reason(status)}"
    rest = text[match.end() :].lower()
    reason = next((r for word, r in _KEYWORD_REASONS if word in rest), "the call failed")
    return f"{head}[{endpoint}] {reason}"


def upstream_status(text: str) -> int | None:
    """The upstream HTTP status a failure message names, if any."""
    match = _UPSTREAM.search(text)
    return int(match["status"]) if match and match["status"] else None


# --------------------------------------------------------------------------- logs

LOG_REDACTOR = Redactor()
"""The process-wide redactor of log records; servers register their keys with it."""

_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Scrubs a record's message and traceback with a :class:`Redactor` before any handler
    sees it. The traceback is rendered to text (redacted) and ``exc_info`` dropped, so a
    handler that renders exceptions itself cannot print the original."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


LOG_FILTER = RedactingFilter(LOG_REDACTOR)
_EXTRA_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Register ``secrets`` and put the redacting filter on every ``polyfuse`` logger.

    A filter on a logger only sees records logged *on that logger* (not its children), so the
    filter goes on ``polyfuse`` and on each ``polyfuse.*`` logger that exists now, plus
    uvicorn's. Call it again after importing more modules; it is idempotent.
    """
    LOG_REDACTOR.add(secrets)
    names = [
        name
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
        and (name == "polyfuse" or name.startswith("polyfuse."))
    ]
    for name in ["polyfuse", *names, *_EXTRA_LOGGERS]:
        logger = logging.getLogger(name)
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)
