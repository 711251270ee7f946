"""Eval rows: a prompt and what it is graded against (gold answer, reference answer, tests).

An eval file is JSONL, CSV or Parquet (read with ``polyfuse distill``'s readers). Each row has a
``prompt`` (text or OpenAI messages) and optionally:

* ``gold``: the verifiable answer (a number, a LaTeX expression, a choice letter, exact text);
* ``reference``: a reference answer an LLM judge compares against;
* ``task`` / ``language``: for breakdowns and per-task recommendations;
* ``grader``: which verifiable grader to use (default: chosen from ``gold`` / ``test_code``);
* ``test_code``: Python run after the answer's code (code tasks, pass@1);
* ``entry_point`` / ``code_prefix``: the function under test and the code put before an answer
  that holds only its body (HumanEval);
* ``id``: your row id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..distill.inputs import InputProblem, InputSpec, PromptRow, read_prompts

__all__ = ["ROW_FIELDS", "EvalRow", "eval_input_spec", "read_eval_rows"]

ROW_FIELDS: tuple[str, ...] = (
    "gold",
    "reference",
    "task",
    "language",
    "grader",
    "test_code",
    "entry_point",
    "code_prefix",
    "id",
)
"""The fields an eval row may carry besides its prompt."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


@dataclass(frozen=True)
class EvalRow:
    """One prompt to evaluate, and what its answers are graded against."""

    input_hash: str
    messages: list[dict[str, Any]]
    id: str
    gold: str | None = None
    reference: str | None = None
    task: str = "default"
    language: str | None = None
    grader: str | None = None
    test_code: str | None = None
    entry_point: str | None = None
    code_prefix: str | None = None

    @classmethod
    def from_prompt_row(cls, row: PromptRow) -> EvalRow:
        """An eval row from a distill row whose ``extra`` holds :data:`ROW_FIELDS`."""
        extra: Mapping[str, Any] = row.extra
        return cls(
            input_hash=row.input_hash,
            messages=row.messages,
            id=_text(extra.get("id")) or _text(row.source_id) or row.input_hash[:12],
            gold=_text(extra.get("gold")),
            reference=_text(extra.get("reference")),
            task=_text(extra.get("task")) or "default",
            language=_text(extra.get("language")),
            grader=_text(extra.get("grader")),
            test_code=_text(extra.get("test_code")),
            entry_point=_text(extra.get("entry_point")),
            code_prefix=_text(extra.get("code_prefix")),
        )

    @property
    def question(self) -> str:
        """The last user message's text (what reports and routing logs show)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(
                        str(part.get("text", "")) for part in content if isinstance(part, Mapping)
                    )
        return ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what an eval record stores about its row)."""
        return {
            "id": self.id,
            "task": self.task,
            "language": self.language,
            "gold": self.gold,
            "reference": self.reference,
            "grader": self.grader,
            "test_code": self.test_code,
            "entry_point": self.entry_point,
            "code_prefix": self.code_prefix,
        }


def eval_input_spec(path: str | Path, *, prompt_field: str | None = None) -> InputSpec:
    """The distill :class:`InputSpec` that reads an eval file with its :data:`ROW_FIELDS`."""
    return InputSpec(Path(path), prompt_field=prompt_field, extra_fields=ROW_FIELDS)


def read_eval_rows(
    path: str | Path, *, prompt_field: str | None = None
) -> Iterator[EvalRow | InputProblem]:
    """Every row of an eval file, as an :class:`EvalRow` or an ``InputProblem`` (bad line)."""
    for item in read_prompts(eval_input_spec(path, prompt_field=prompt_field)):
        yield item if isinstance(item, InputProblem) else EvalRow.from_prompt_row(item)
