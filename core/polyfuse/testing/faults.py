"""Faults and latency of the fake server: what goes wrong, and how fast it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "LatencyModel"]

FaultKind = Literal[
    "status",
    "slow_first_byte",
    "hang_mid_stream",
    "malformed_json",
    "malformed_sse",
    "drop_connection",
    "empty_content",
    "wrong_choices",
    "error_mid_stream",
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass
class Fault:
    """One injected fault, applied to the next matching chat request(s).

    Attributes:
        kind: What goes wrong:

            * ``status``: answer ``status`` with ``body`` and ``headers``.
            * ``slow_first_byte``: wait ``delay_s`` before answering at all.
            * ``hang_mid_stream``: send the start of the answer (role chunk and one content
              chunk when streaming, part of the JSON body otherwise), then stall for
              ``delay_s`` (forever if 0) before sending the rest.
            * ``malformed_json``: 200 with the truncated JSON body ``{"choices": [``.
            * ``malformed_sse``: an SSE stream with a ``data: {not json`` event.
            * ``drop_connection``: send the headers and part of the body, then close the
              connection abruptly.
            * ``empty_content``: every choice has content ``""``.
            * ``wrong_choices``: return ``choices`` choices whatever ``n`` asked for.
            * ``error_mid_stream``: one content chunk, then an SSE ``{"error": ...}`` event and
              the end of the stream (no ``[DONE]``); non-streaming requests get a 200 whose
              body is the error object.
        status: HTTP status for ``kind="status"``.
        body: Body for ``kind="status"``; JSON-encoded unless ``str`` or ``bytes``. Defaults to
            OpenAI's nested ``{"error": {"message", "type", "param", "code"}}``.
        headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
        delay_s: Delay of ``slow_first_byte``; stall of ``hang_mid_stream`` (0 = forever).
        choices: Number of choices for ``wrong_choices`` (0 allowed).
        times: How many requests the fault applies to.
        match_model: Only requests whose ``body["model"]`` equals this.
    """

    kind: FaultKind
    status: int = 500
    body: Any = None
    headers: dict[str, str] | None = None
    delay_s: float = 0.0
    choices: int = 0
    times: int = 1
    match_model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.times < 1:
            raise ValueError("Fault.times must be >= 1")
        if self.choices < 0:
            raise ValueError("Fault.choices must be >= 0")


@dataclass
class LatencyModel:
    """How fast the fake server generates; deterministic given the server's ``seed``.

    Attributes:
        ttft_s: Time to first token (after waiting for capacity).
        tokens_per_s: Generation speed; ``None`` means instant. Streams are paced chunk by
            chunk; non-streaming requests sleep the total time.
        jitter: Relative jitter: each request's times are multiplied by a factor drawn
            uniformly from ``[1 - jitter, 1 + jitter]`` by a ``random.Random(seed)``.
        capacity: At most this many requests generate at once; the others wait in FIFO order.
            A request holds one slot whatever its ``n``.
        straggler_every: Every k-th generating request (1-based) is a straggler; 0 = none.
        straggler_factor: How many times slower a straggler is.
        output_tokens: Forces the completion length: the default responder pads (with
            ``tok``) or truncates its text to this many words; for JSON or tool-call replies
            only the reported ``completion_tokens`` (and so the timing) changes.
    """

    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    jitter: float = 0.0
    capacity: int | None = None
    straggler_every: int = 0
    straggler_factor: float = 10.0
    output_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_s is not None and self.tokens_per_s <= 0:
            raise ValueError("LatencyModel.tokens_per_s must be > 0 or None")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("LatencyModel.capacity must be >= 1 or None")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("LatencyModel.jitter must be in [0, 1)")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise ValueError("LatencyModel.output_tokens must be >= 1 or None")
