"""Requests: OpenAI-style chat messages and sampling parameters, validated at the edge."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from ._validation import describe_validation_error
from .errors import InvalidRequestError

__all__ = [
    "AssistantMessage",
    "ChatRequest",
    "Message",
    "MessageInput",
    "ModelRole",
    "SamplingOptions",
    "SamplingParams",
    "ToolCall",
    "ToolCallFunction",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
_ROLES = ("system", "developer", "user", "assistant", "tool")
ModelRole = Literal["candidate", "fusor", "judge", "selector", "proposer"]
"""Why a model is called: to write a ``candidate``, as the ``fusor`` (Fusion-of-N or the
Mixture-of-Agents aggregator), as the Best-of-N ``judge``, as the USC ``selector``, or as a
Mixture-of-Agents ``proposer``. Backends read it from :attr:`ChatRequest.role`."""

_HINTS = {"extra_forbidden": "unknown parameter; put vendor-specific fields in extra_body={...}"}


class ToolCallFunction(BaseModel):
    """The function part of a tool call: its name and JSON-encoded arguments."""

    name: str
    arguments: str = "{}"


class ToolCall(BaseModel):
    """One tool call in an assistant message (OpenAI shape)."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (raises ``ValueError`` when they are not JSON)."""
        return json.loads(self.function.arguments or "{}")


class Message(BaseModel):
    """One chat message in the OpenAI shape.

    Extra fields are kept and forwarded, so vendor extensions survive the round trip.
    """

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError(
                "a 'tool' message needs 'tool_call_id' (the id of the call it answers)"
            )
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an 'assistant' message needs 'content' or 'tool_calls'")
        elif self.content is None:
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only 'assistant' messages may carry 'tool_calls'")
        return self


class AssistantMessage(BaseModel):
    """The final answer: text, tool calls, or both."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None

    @property
    def text(self) -> str:
        """The content, or an empty string when the answer is only tool calls."""
        return self.content or ""

    def to_openai(self) -> dict[str, Any]:
        """The message as an OpenAI ``assistant`` message dict."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        return out


MessageInput = Message | Mapping[str, Any]


class SamplingParams(BaseModel):
    """Sampling parameters forwarded to every candidate (and, unless overridden, the aggregator).

    Unknown names are rejected so that typos surface; put vendor-specific fields in
    ``extra_body``.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    extra_body: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _empty_stop_is_none(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value == [] or value == "":
            return None
        return value

    def merged(self, overrides: SamplingParams | Mapping[str, Any] | None) -> SamplingParams:
        """These params with the set fields of ``overrides`` on top."""
        if overrides is None:
            return self
        data = (
            overrides.model_dump(exclude_unset=True)
            if isinstance(overrides, SamplingParams)
            else dict(overrides)
        )
        if not data:
            return self
        merged = self.model_dump(exclude_unset=True)
        merged.update(data)
        return SamplingParams.model_validate(merged)

    def to_body(self) -> dict[str, Any]:
        """The parameters as chat-completions body fields (unset ones left out)."""
        body = self.model_dump(exclude_none=True, exclude={"extra_body"})
        if self.extra_body:
            body.update(self.extra_body)
        return body


class SamplingOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`Fusion.run <polyfuse.Fusion.run>` and friends: the
    :class:`SamplingParams` fields, spelled out for IDEs and type checkers."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: str | list[str] | None
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None
    logit_bias: dict[str, float] | None
    user: str | None
    extra_body: dict[str, Any] | None


class ChatRequest(BaseModel):
    """A validated chat request: messages plus sampling parameters.

    The messages are also kept as plain dicts and as one pre-encoded JSON string, so fanning
    out N calls never serialises the conversation N times.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[Message] = Field(min_length=1)
    params: SamplingParams = SamplingParams()

    _wire: list[dict[str, Any]] | None = PrivateAttr(default=None)
    _encoded: str | None = PrivateAttr(default=None)
    _role: ModelRole | None = PrivateAttr(default=None)

    @property
    def role(self) -> ModelRole | None:
        """Why the model is being called (see :data:`ModelRole`); ``None`` outside a fusion.

        Never sent to the server: backends that route or fake replies by role read it here.
        """
        return self._role

    def for_role(self, role: ModelRole) -> ChatRequest:
        """The same request (sharing the encoded messages), marked as made for ``role``."""
        clone = self.with_params(self.params)
        clone._role = role
        return clone

    @property
    def wire_messages(self) -> list[dict[str, Any]]:
        """Messages as OpenAI dicts (computed once)."""
        if self._wire is None:
            self._wire = [m.model_dump(exclude_none=True) for m in self.messages]
        return self._wire

    @property
    def messages_json(self) -> str:
        """Messages encoded as one JSON array (computed once)."""
        if self._encoded is None:
            self._encoded = json.dumps(
                self.wire_messages, ensure_ascii=False, separators=(",", ":")
            )
        return self._encoded

    @classmethod
    def from_wire(cls, messages: list[dict[str, Any]], params: SamplingParams) -> ChatRequest:
        """A request from trusted, already-valid OpenAI message dicts (no validation)."""
        request = cls.model_construct(
            messages=[Message.model_construct(**m) for m in messages], params=params
        )
        request._wire = messages
        return request

    @property
    def last_user_text(self) -> str:
        """Text of the last user message (the question an aggregator shows its model)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return content_text(message.content)
        return ""

    def with_params(self, params: SamplingParams) -> ChatRequest:
        """The same messages with other parameters (shares the encoded messages)."""
        clone = ChatRequest.model_construct(messages=self.messages, params=params)
        clone._wire = self._wire
        clone._encoded = self._encoded
        clone._role = self._role
        return clone

    @classmethod
    def build(
        cls,
        messages: str | Sequence[MessageInput],
        params: SamplingParams | Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> ChatRequest:
        """Validate user input into a request; raise :class:`InvalidRequestError` if it is bad.

        ``messages`` may be a plain string (one user message), a list of OpenAI-style dicts or
        :class:`Message` objects. Keyword arguments are sampling parameters.
        """
        if isinstance(messages, str):
            if not messages.strip():
                raise InvalidRequestError("the prompt is empty; pass a question or messages")
            messages = [{"role": "user", "content": messages}]
        if not messages:
            raise InvalidRequestError(
                "messages is empty; pass at least one message, e.g. "
                "[{'role': 'user', 'content': 'Hello'}]"
            )
        merged: dict[str, Any] = {}
        if isinstance(params, SamplingParams):
            merged.update(params.model_dump(exclude_unset=True))
        elif params:
            merged.update(params)
        merged.update(kwargs)
        try:
            parsed = [
                m if isinstance(m, Message) else _parse_message(m, i)
                for i, m in enumerate(messages)
            ]
            sampling = SamplingParams.model_validate(merged)
        except ValidationError as exc:
            message = describe_validation_error(exc, hints=_HINTS)
            raise InvalidRequestError(message + _extra_body_example(exc, merged)) from None
        return cls.model_construct(messages=parsed, params=sampling)


def _extra_body_example(exc: ValidationError, given: Mapping[str, Any]) -> str:
    """The working form of unknown (vendor) sampling fields, e.g. for ``top_k``."""
    unknown = {
        str(err["loc"][0]): given.get(str(err["loc"][0]))
        for err in exc.errors()
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1
    }
    if not unknown:
        return ""
    example = ", ".join(f"{name!r}: {value!r}" for name, value in unknown.items())
    return (
        f" (write extra_body={{{example}}}; in ChatFusion: "
        f"model_kwargs={{'extra_body': {{{example}}}}})"
    )


def _parse_message(raw: Any, index: int) -> Message:
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(
            f"message {index} is a {type(raw).__name__}; each message must be a dict like "
            "{'role': 'user', 'content': '...'}"
        )
    role = raw.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(
            f"message {index} has unknown role {role!r}; use one of {', '.join(_ROLES)}"
        )
    try:
        return Message.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"message {index}: {describe_validation_error(exc, hints=_HINTS)}"
        ) from None


def content_text(content: str | list[dict[str, Any]] | None) -> str:
    """The text of a message content (text parts joined; other parts ignored)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
