"""Training-record shapes: OpenAI chat SFT, Alpaca, and preference pairs.

Each builder returns the record's training fields; provenance is added next to them by the
processor. Builders raise :class:`~polyfuse.distill.errors.RecordError` when a row's answers
cannot make that kind of record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..messages import AssistantMessage, content_text
from ..results import Candidate
from .errors import RecordError
from .spec import Chosen, RecordFormat

__all__ = ["Answers", "alpaca_record", "build_record", "preference_record", "sft_record"]


@dataclass(frozen=True)
class Answers:
    """What the aggregations produced for one prompt.

    Attributes:
        primary: the primary aggregation's answer (e.g. the fused one).
        primary_method: its method name (``fuse``, ``best_of_n``, ...).
        candidates: the teachers' usable answers.
        scores: the judge's score per candidate index, when a judge ran.
        best: the index of the best-scored candidate, when a judge ran.
    """

    primary: AssistantMessage
    primary_method: str
    candidates: Sequence[Candidate]
    scores: dict[int, float | None] | None = None
    best: int | None = None


def sft_record(messages: list[dict[str, Any]], answers: Answers) -> dict[str, Any]:
    """``{"messages": [...prompt, answer]}``: OpenAI chat fine-tuning format."""
    return {"messages": [*messages, answers.primary.to_openai()]}


def alpaca_record(messages: list[dict[str, Any]], answers: Answers) -> dict[str, Any]:
    """``{"instruction", "input", "output", "system", "history"}`` (Alpaca / LLaMA-Factory).

    The last user message is the instruction; earlier user/assistant turns become ``history``
    as ``[user, assistant]`` pairs.
    """
    if answers.primary.tool_calls and not answers.primary.text:
        raise RecordError("the answer is a tool call, which Alpaca cannot hold; use --format sft")
    system = ""
    turns: list[tuple[str, str]] = []
    for message in messages:
        role = message.get("role")
        text = content_text(message.get("content"))
        if role == "system" and not turns:
            system = f"{system}\n\n{text}" if system else text
        elif role in ("user", "assistant") and not message.get("tool_calls"):
            turns.append((role, text))
        else:
            raise RecordError(
                f"the prompt has a {role!r} message that Alpaca cannot hold; use --format sft"
            )
    if not turns or turns[-1][0] != "user":
        raise RecordError("the prompt has no final user message to use as the instruction")
    history: list[list[str]] = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            if pending is not None:
                history.append([pending, ""])
            pending = text
        else:
            history.append([pending or "", text])
            pending = None
    if pending is not None:
        history.append([pending, ""])
    return {
        "instruction": turns[-1][1],
        "input": "",
        "output": answers.primary.text,
        "system": system,
        "history": history,
    }


def preference_record(
    messages: list[dict[str, Any]], answers: Answers, chosen: Chosen
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"prompt", "chosen", "rejected"}`` (TRL's conversational preference format).

    The chosen answer is the primary one (``chosen="primary"``) or the best-scored candidate
    (``"best"``); the rejected answer is the lowest-scored candidate (ties: the lowest index).
    Returns the record and a note on where each side came from.
    """
    if answers.scores is None or answers.best is None:
        raise RecordError("preference pairs need judge scores, and no judge ran")
    scored = [(s, i) for i, s in answers.scores.items() if s is not None]
    if not scored:
        raise RecordError("the judge scored no candidate; no preference pair")
    low_score, low = min(scored)
    by_index = {c.index: c for c in answers.candidates}
    rejected = by_index[low]
    if chosen == "best" or answers.primary_method == "best_of_n":
        winner = by_index[answers.best]
        if answers.scores[answers.best] == low_score:
            raise RecordError(f"every candidate scored {low_score:g}; no preference pair")
        chosen_msg, chosen_from = winner.message(), f"candidate #{winner.index}"
    else:
        chosen_msg, chosen_from = answers.primary, answers.primary_method
    if chosen_msg.text == rejected.text and chosen_msg.tool_calls == rejected.tool_calls:
        raise RecordError("the chosen and rejected answers are identical; no preference pair")
    record = {
        "prompt": messages,
        "chosen": [chosen_msg.to_openai()],
        "rejected": [rejected.message().to_openai()],
    }
    note = {
        "chosen_from": chosen_from,
        "rejected_from": f"candidate #{rejected.index}",
        "rejected_score": low_score,
    }
    return record, note


def build_record(
    fmt: RecordFormat, messages: list[dict[str, Any]], answers: Answers, chosen: Chosen
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The training fields of a record, and a provenance note (preference pairs only)."""
    if fmt == "sft":
        return sft_record(messages, answers), None
    if fmt == "alpaca":
        return alpaca_record(messages, answers), None
    return preference_record(messages, answers, chosen)
