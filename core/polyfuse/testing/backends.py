"""In-process fake backends: answers from a Python function, or scripted per role.

No server, no sockets: a fusion built on these runs entirely in the test's event loop. Every
call sees :attr:`ChatRequest.role <polyfuse.ChatRequest.role>` (``candidate``, ``fusor``,
``judge``, ``selector`` or ``proposer``), so replies are routed by *why* the model is called,
never by the wording of a prompt.

Example::

    from polyfuse import Fusion, Pool
    from polyfuse.testing import FunctionBackend, ScriptedBackend

    def reply(request):
        if request.role == "fusor":
            return "fused answer"
        return f"draft (seed {request.params.seed})"

    fusion = Fusion(Pool.repeat(FunctionBackend(reply), 3))
    assert fusion.run("q", seed=0).content == "fused answer"

    scripted = ScriptedBackend({"candidate": ["a", "b", "c"], "judge": "Score: 7"})
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..backends.base import Completion, StreamDelta
from ..errors import InvalidRequestError
from ..messages import ChatRequest, ModelRole
from ..usage import Usage

__all__ = ["FunctionBackend", "Reply", "ReplyFunction", "ScriptedBackend"]

Reply = str | Completion | BaseException
"""What a fake answers: text, a whole :class:`~polyfuse.Completion` (tool calls, finish reason,
usage), or an exception to raise (use :mod:`polyfuse.errors` types for backend failures)."""

ReplyFunction = Callable[[ChatRequest], Reply | Awaitable[Reply]]
"""A function of the request (its messages, ``params`` and ``role``) that returns a reply,
sync or async."""


def _words(text: str) -> int:
    return len(text.split())


class FunctionBackend:
    """A :class:`~polyfuse.Backend` whose answers come from ``reply(request)``.

    Args:
        reply: called once per answer with the :class:`~polyfuse.ChatRequest`; read
            ``request.role`` to answer as a candidate, fusor, judge, selector or proposer.
            Return text, a :class:`~polyfuse.Completion`, or an exception to raise.
        name: the backend's label in results.
        model: the model name it reports.
        supports_n: ``True`` answers ``n`` choices in one call (``reply`` is called ``n``
            times); ``False`` (default) makes the engine call once per sample.
        chunk_words: words per streamed delta.

    Usage is counted in words (prompt: words of the messages; completion: words of the
    answer) unless the reply is a :class:`~polyfuse.Completion` that carries its own.
    Every request is kept in :attr:`requests` for inspection.
    """

    def __init__(
        self,
        reply: ReplyFunction,
        *,
        name: str = "function",
        model: str = "function-model",
        supports_n: bool = False,
        chunk_words: int = 1,
    ) -> None:
        if not callable(reply):
            raise InvalidRequestError(
                f"FunctionBackend needs a function of the request (got {type(reply).__name__})"
            )
        if chunk_words < 1:
            raise InvalidRequestError(f"chunk_words must be >= 1 (got {chunk_words})")
        self._reply = reply
        self._name = name
        self._model = model
        self.supports_n: bool | None = supports_n
        self._chunk_words = chunk_words
        self.requests: list[ChatRequest] = []
        """Every request answered, in call order."""

    @property
    def name(self) -> str:
        """The label in results."""
        return self._name

    @property
    def model(self) -> str:
        """The reported model name."""
        return self._model

    def __repr__(self) -> str:
        return f"FunctionBackend(name={self._name!r}, model={self._model!r})"

    def requests_for(self, role: ModelRole) -> list[ChatRequest]:
        """The requests made for one role (e.g. ``"fusor"``)."""
        return [r for r in self.requests if r.role == role]

    async def _answer(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        started = time.perf_counter()
        reply = self._reply(request)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            if reply.model is None:
                reply.model = self._model
            return reply
        if not isinstance(reply, str):
            raise InvalidRequestError(
                f"the reply function of {self._name} returned a {type(reply).__name__}; "
                "return text, a Completion or an exception"
            )
        prompt = sum(_words(str(m.content or "")) for m in request.messages)
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=_words(reply),
            total_tokens=prompt + _words(reply),
            calls=1,
        )
        return Completion(
            content=reply,
            finish_reason="stop",
            usage=usage,
            model=self._model,
            latency_s=time.perf_counter() - started,
        )

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """``n`` answers when ``supports_n``, else one."""
        count = n if self.supports_n else 1
        answers: list[Completion] = []
        for i in range(count):
            seeded = request
            if i and request.params.seed is not None:
                params = request.params.model_copy(update={"seed": request.params.seed + i})
                seeded = request.with_params(params)
            answers.append(await self._answer(seeded))
        for extra in answers[1:]:
            extra.usage = Usage(calls=0)
        return answers

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """The answer in deltas of ``chunk_words`` words, then its finish reason and usage."""
        completion = await self._answer(request)
        if completion.content:
            words = completion.content.split(" ")
            for start in range(0, len(words), self._chunk_words):
                piece = " ".join(words[start : start + self._chunk_words])
                yield StreamDelta(content=piece if start == 0 else " " + piece)
                await asyncio.sleep(0)  # let a consumer cancel between deltas
        if completion.tool_calls:
            yield StreamDelta(
                tool_calls=[
                    {"index": i, "id": call.id, "function": call.function.model_dump()}
                    for i, call in enumerate(completion.tool_calls)
                ]
            )
        yield StreamDelta(
            finish_reason=completion.finish_reason or "stop",
            usage=completion.usage,
            model=completion.model,
        )

    async def aclose(self) -> None:
        """Nothing to release."""


class ScriptedBackend(FunctionBackend):
    """A :class:`FunctionBackend` that answers from a script, by role.

    Args:
        script: for each role, one reply (answered every time) or a list of replies (answered
            in turn; the last one repeats once the list is used up). A role missing from the
            script raises :class:`~polyfuse.errors.InvalidRequestError` naming it, so a test
            never passes on a reply it did not expect.
        kwargs: :class:`FunctionBackend` options (``name``, ``model``, ``supports_n``, ...).

    Example::

        backend = ScriptedBackend(
            {"candidate": ["4", "5", "4"], "fusor": "4", "judge": ["Score: 3", "Score: 9"]}
        )
    """

    def __init__(self, script: Mapping[ModelRole, Reply | Iterable[Reply]], **kwargs: Any) -> None:
        self._script: dict[str, list[Reply]] = {}
        for role, replies in script.items():
            if isinstance(replies, (str, Completion, BaseException)):
                self._script[role] = [replies]
            else:
                self._script[role] = list(replies)
                if not self._script[role]:
                    raise InvalidRequestError(f"the script for {role!r} is empty")
        self._turns: dict[str, int] = {}
        super().__init__(self._next, **kwargs)

    def _next(self, request: ChatRequest) -> Reply:
        role = request.role or "candidate"
        replies = self._script.get(role)
        if replies is None:
            known = ", ".join(self._script) or "none"
            return InvalidRequestError(
                f"{self.name} has no scripted reply for a {role} call (scripted roles: {known})"
            )
        turn = self._turns.get(role, 0)
        self._turns[role] = turn + 1
        return replies[min(turn, len(replies) - 1)]
