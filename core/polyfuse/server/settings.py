"""``ServerSettings``: the ``[server]`` table of a presets file, validated."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .._validation import describe_validation_error
from ..errors import InvalidRequestError

__all__ = ["ServerSettings", "load_api_keys"]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class ServerSettings(BaseModel):
    """Settings of ``polyfuse serve``, read from the ``[server]`` table of the presets file.

    API keys never live in the presets file: name an environment variable that holds them
    (comma-separated) or a file with one key per line (``#`` starts a comment).

    Example::

        [server]
        host = "127.0.0.1"
        port = 8090
        api_keys_env = "POLYFUSE_API_KEYS"
        max_concurrent_requests = 32
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1, description="interface to bind")
    port: int = Field(default=8090, ge=0, le=65535, description="port to bind (0: any free one)")
    api_keys_env: str | None = Field(
        default=None, min_length=1, description="env var holding the accepted keys, comma-separated"
    )
    api_keys_file: Path | None = Field(
        default=None, description="file with one accepted key per line"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="chat completions in flight; more get 429"
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with a 429")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="a request body must arrive within this; else 408"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="request line and headers must arrive within this; else 408"
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="larger request header blocks get 431"
    )
    max_connections: int = Field(
        default=512, ge=1, description="open connections; more are answered 503 and closed"
    )
    keep_alive_timeout_s: float = Field(
        default=5.0, gt=0, description="idle keep-alive connections are closed after this"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names accepted besides loopback ones ('*': any); without API keys "
        "and with this empty, only loopback names are accepted",
    )
    max_messages: int = Field(default=2048, ge=1, description="messages per request; more: 400")
    max_tools: int = Field(default=128, ge=0, description="tools per request; more: 400")
    max_content_chars: int = Field(
        default=1_000_000, ge=1, description="characters of all message text per request; more: 400"
    )
    max_json_depth: int = Field(
        default=64, ge=4, le=512, description="nesting depth of the request JSON; deeper: 400"
    )
    max_tokens_ceiling: int = Field(
        default=32_768, ge=1, description="the largest max_tokens a request may ask for; more: 400"
    )
    allow_return_candidates: bool = Field(
        default=False,
        description='honour the request extension "polyfuse": {"return_candidates": true}',
    )
    forward_params: list[str] = Field(
        default_factory=list,
        description="vendor request fields (e.g. top_k) forwarded to the candidates",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API"
    )
    shutdown_timeout_s: int = Field(
        default=30, ge=0, description="how long in-flight requests may finish on shutdown"
    )
    log_level: LogLevel = "info"
    access_log: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_inline_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            inline = [k for k in ("api_key", "api_keys") if k in data]
            if inline:
                raise ValueError(
                    f"{inline[0]!r} is not allowed in the presets file (it would put a secret "
                    'in a file that gets shared); set api_keys_env = "VAR" or '
                    'api_keys_file = "path" instead'
                )
        return data

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> ServerSettings:
        """Validate a ``[server]`` table; raise :class:`InvalidRequestError` when it is wrong."""
        try:
            return cls.model_validate(dict(table or {}))
        except ValidationError as exc:
            details = describe_validation_error(exc, root="server")
            raise InvalidRequestError(f"invalid [server] settings: {details}") from None

    @property
    def auth_enabled(self) -> bool:
        """True when the settings name a source of API keys."""
        return self.api_keys_env is not None or self.api_keys_file is not None

    @property
    def loopback_only(self) -> bool:
        """True when ``host`` is a loopback address (the server is not reachable from outside)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_api_keys(settings: ServerSettings) -> list[SecretStr]:
    """Read the accepted API keys from the environment variable and/or file in ``settings``.

    Raises :class:`InvalidRequestError` when a named source is missing or holds no key, so a
    misconfigured server refuses to start instead of running unprotected.
    """
    keys: list[str] = []
    if settings.api_keys_env is not None:
        value = os.environ.get(settings.api_keys_env)
        if value is None:
            raise InvalidRequestError(
                f"[server] api_keys_env names ${settings.api_keys_env}, which is not set; "
                "export it (comma-separated keys) or remove api_keys_env"
            )
        found = [k.strip() for k in value.split(",") if k.strip()]
        if not found:
            raise InvalidRequestError(f"${settings.api_keys_env} holds no API key")
        keys.extend(found)
    if settings.api_keys_file is not None:
        path = settings.api_keys_file.expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidRequestError(
                f"[server] api_keys_file {str(path)!r} cannot be read ({exc.strerror}); "
                "create it with one key per line"
            ) from None
        found = [
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        ]
        if not found:
            raise InvalidRequestError(f"the API keys file {str(path)!r} holds no key")
        keys.extend(found)
    return [SecretStr(k) for k in dict.fromkeys(keys)]
