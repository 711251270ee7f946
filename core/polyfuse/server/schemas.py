"""The request side of the OpenAI chat-completions wire protocol: parsing and validation.

Every check here answers 400 in the OpenAI error shape, naming the offending field in
``param``, so that a client learns exactly what to change.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidRequestError
from ..messages import ChatRequest
from .errors import APIError

__all__ = ["ChatCompletionRequest", "ParsedChatRequest", "parse_chat_request"]

# Accepted and deliberately not acted on: they describe storage or billing on OpenAI's side.
IGNORED_FIELDS: frozenset[str] = frozenset({"metadata", "store", "service_tier"})

# Forwarded to the candidates (and the fusor) as vendor fields.
PASSTHROUGH_FIELDS: frozenset[str] = frozenset({"reasoning_effort", "verbosity"})


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionSpec(_Open):
    """``tools[].function``."""

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(_Open):
    """One entry of ``tools`` (function tools only)."""

    type: Literal["function"]
    function: FunctionSpec


class _NamedFunction(_Open):
    name: str = Field(min_length=1)


class NamedToolChoice(_Open):
    """``tool_choice`` naming one function."""

    type: Literal["function"]
    function: _NamedFunction


class JSONSchemaSpec(_Open):
    """``response_format.json_schema``."""

    name: str = Field(min_length=1)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Open):
    """``response_format``: text, any JSON object, or JSON matching a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _needs_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object with name and schema")
        return self


class StreamOptions(_Open):
    """``stream_options``."""

    include_usage: bool = False


class PolyfuseOptions(BaseModel):
    """The ``polyfuse`` request extension (ignored by other servers, off by default)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    return_candidates: bool = False


class ChatCompletionRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body, with the checks OpenAI itself applies."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    polyfuse: PolyfuseOptions | None = None


@dataclass(frozen=True, slots=True)
class ParsedChatRequest:
    """What the server needs from a valid request."""

    model: str
    request: ChatRequest
    stream: bool
    include_usage: bool
    return_candidates: bool


_FORWARDED = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
)


_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _param(loc: tuple[int | str, ...]) -> str:
    """The field path of an error, without pydantic's union and validator tags."""
    parts = [
        str(part)
        for part in loc
        if isinstance(part, int) or (_FIELD.match(part) and part not in _TYPE_TAGS)
    ]
    return ".".join(parts)


def _validation_error(exc: ValidationError) -> APIError:
    first = exc.errors()[0]
    param = _param(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}" if param else message, param=param or None)


def _check_supported(body: ChatCompletionRequest) -> None:
    if body.n not in (None, 1):
        raise APIError(
            400,
            "n must be 1: polyfuse returns one fused answer (the preset sets how many "
            "candidates are sampled)",
            param="n",
            code="unsupported_value",
        )
    if body.logprobs or body.top_logprobs:
        field = "logprobs" if body.logprobs else "top_logprobs"
        raise APIError(
            400,
            f"{field} is not supported: a fused answer has no single model's logprobs",
            param=field,
            code="unsupported_parameter",
        )


def _extras(body: ChatCompletionRequest, forward_params: Collection[str]) -> dict[str, Any]:
    forwarded: dict[str, Any] = {}
    for name, value in (body.model_extra or {}).items():
        if name in IGNORED_FIELDS:
            continue
        if name in PASSTHROUGH_FIELDS or name in forward_params:
            forwarded[name] = value
            continue
        hint = (
            "; use 'tools' and 'tool_choice'"
            if name in ("functions", "function_call")
            else "; to forward a vendor parameter (e.g. top_k) to the candidates, list it in "
            "[server] forward_params"
        )
        raise APIError(
            400,
            f"Unrecognized request argument supplied: {name}{hint}",
            param=name,
            code="unknown_parameter",
        )
    return forwarded


def parse_chat_request(data: Any, *, forward_params: Collection[str] = ()) -> ParsedChatRequest:
    """Validate a decoded request body into a :class:`ParsedChatRequest`.

    Raises :class:`APIError` (400) naming the bad field.
    """
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_body")
    try:
        body = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    _check_supported(body)
    extra_body = _extras(body, forward_params)
    params: dict[str, Any] = {}
    for name in _FORWARDED:
        if name in body.model_fields_set and data[name] is not None:
            params[name] = data[name]
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if extra_body:
        params["extra_body"] = extra_body
    try:
        request = ChatRequest.build(body.messages, params)
    except InvalidRequestError as exc:
        text = str(exc)
        param = "messages" if text.startswith("message") else None
        raise APIError(400, text, param=param) from None
    return ParsedChatRequest(
        model=body.model,
        request=request,
        stream=bool(body.stream),
        include_usage=bool(
            body.stream and body.stream_options and body.stream_options.include_usage
        ),
        return_candidates=bool(body.polyfuse and body.polyfuse.return_candidates),
    )
