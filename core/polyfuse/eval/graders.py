"""Verifiable graders: is an answer right? (exact match, number, MATH equivalence, choice
letter, code pass@1).

A grader takes the answer's text and its :class:`~polyfuse.eval.rows.EvalRow` and returns a
:class:`Grade` (score 1.0 or 0.0 plus what was extracted). Rows without a gold answer or tests
are not graded here: an LLM judge scores them (:mod:`polyfuse.eval.judges`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .answers import extract_choice, extract_code, extract_final, extract_number, parse_number
from .errors import EvalConfigError
from .mathequiv import math_equal, normalise_latex
from .rows import EvalRow
from .sandbox import SandboxLimits, run_python

__all__ = [
    "GRADERS",
    "Grade",
    "Grader",
    "answer_key",
    "grade_answer",
    "grader_for",
]


@dataclass(frozen=True)
class Grade:
    """A verifiable grade: ``score`` 1.0 (right) or 0.0, the extracted answer, and a note."""

    score: float
    extracted: str | None
    detail: str = ""


Grader = Callable[[str, EvalRow], Awaitable[Grade]]


def _need_gold(row: EvalRow, grader: str) -> str:
    if row.gold is None:
        raise EvalConfigError(
            f"row {row.id!r}: the {grader} grader needs a gold answer; add a 'gold' field or "
            "let an LLM judge score it"
        )
    return row.gold


def _squash(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!")


async def grade_exact(answer: str, row: EvalRow) -> Grade:
    """The final answer equals the gold text (case and spacing ignored)."""
    gold = _need_gold(row, "exact")
    final = extract_final(answer)
    return Grade(float(_squash(final) == _squash(gold)), final[:200])


async def grade_number(answer: str, row: EvalRow) -> Grade:
    """The final number equals the gold number (commas, ``$`` and units ignored)."""
    gold_text = _need_gold(row, "number")
    gold = parse_number(gold_text)
    if gold is None:
        raise EvalConfigError(f"row {row.id!r}: gold {gold_text!r} is not a number")
    value = extract_number(answer)
    if value is None:
        return Grade(0.0, None, "no number in the answer")
    right = math.isclose(value, gold, rel_tol=1e-9, abs_tol=1e-6)
    shown = str(int(value)) if value.is_integer() else repr(value)
    return Grade(float(right), shown)


async def grade_math(answer: str, row: EvalRow) -> Grade:
    r"""The final (boxed) answer is equivalent to the gold one (``\frac{1}{2}`` = ``0.5``)."""
    gold = _need_gold(row, "math")
    final = extract_final(answer)
    return Grade(float(math_equal(final, gold)), final[:200])


async def grade_choice(answer: str, row: EvalRow) -> Grade:
    """The chosen letter equals the gold letter."""
    gold = _need_gold(row, "choice").strip().strip("()").upper()
    choice = extract_choice(answer)
    return Grade(float(choice == gold), choice)


def code_program(answer: str, row: EvalRow) -> str:
    """The program pass@1 runs: the answer's code (after the prompt's code when the answer holds
    only a function body), then the row's tests."""
    if not row.test_code:
        raise EvalConfigError(f"row {row.id!r}: the code grader needs 'test_code'")
    code = extract_code(answer)
    entry = row.entry_point
    if row.code_prefix and entry and not re.search(rf"def\s+{re.escape(entry)}\s*\(", code):
        code = row.code_prefix + code
    return f"{code}\n\n{row.test_code}"


def code_grader(limits: SandboxLimits | None = None) -> Grader:
    """A pass@1 grader running the code and its tests in the sandbox with ``limits``."""

    async def grade_code(answer: str, row: EvalRow) -> Grade:
        result = await run_python(code_program(answer, row), limits)
        return Grade(float(result.passed), None, result.reason)

    return grade_code


GRADERS: dict[str, Grader] = {
    "exact": grade_exact,
    "number": grade_number,
    "math": grade_math,
    "choice": grade_choice,
    "code": code_grader(),
}
"""The verifiable graders by name (a row's ``grader`` field, ``--grader``)."""


def grader_for(row: EvalRow, override: str | None = None) -> str | None:
    """The grader name for a row: ``override``, the row's ``grader``, or one chosen from what the
    row has (tests → code; a letter → choice; a number → number; other gold → math); ``None``
    when the row has nothing to grade against (an LLM judge is needed)."""
    name = override or row.grader
    if name is not None:
        if name not in GRADERS:
            raise EvalConfigError(f"unknown grader {name!r}; use one of {', '.join(GRADERS)}")
        return name
    if row.test_code:
        return "code"
    if row.gold is None:
        return None
    gold = row.gold.strip()
    if re.fullmatch(r"\(?[A-J]\)?", gold):
        return "choice"
    if parse_number(gold) is not None:
        return "number"
    return "math"


async def grade_answer(
    answer: str,
    row: EvalRow,
    *,
    override: str | None = None,
    code_limits: SandboxLimits | None = None,
) -> tuple[str, Grade] | None:
    """``(grader name, grade)`` for an answer, or ``None`` when the row has no verifiable grader."""
    name = grader_for(row, override)
    if name is None:
        return None
    grader = code_grader(code_limits) if name == "code" and code_limits else GRADERS[name]
    return name, await grader(answer, row)


def answer_key(text: str, row: EvalRow, override: str | None = None) -> str | None:
    """The voting key of an answer: what its grader would compare (the number, the normalised
    MATH answer, the letter, the squashed final text), so that majority vote counts answers the
    way they are graded. Rows without a verifiable grader vote on the squashed text."""
    name = grader_for(row, override)
    if name == "number":
        value = extract_number(text)
        if value is None:
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if name == "math":
        return normalise_latex(extract_final(text)) or None
    if name == "choice":
        return extract_choice(text)
    if name == "code":
        return _squash(extract_code(text)) or None
    return _squash(extract_final(text)) or None
