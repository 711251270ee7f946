"""Verifiable graders on hand-made cases."""

from __future__ import annotations

import pytest

from polyfuse.eval import EvalConfigError, EvalRow, Grade, grade_answer, grader_for, math_equal
from polyfuse.eval.answers import extract_choice, extract_code, extract_number
from polyfuse.eval.graders import answer_key


async def _grade(answer: str, row: EvalRow) -> tuple[str, Grade]:
    graded = await grade_answer(answer, row)
    assert graded is not None
    return graded


def _row(**fields: object) -> EvalRow:
    return EvalRow(input_hash="h", messages=[{"role": "user", "content": "q"}], id="r", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac12", "1/2"),
        ("\\tfrac{3}{4}", "0.75"),
        ("x = 3", "3"),
        ("90^\\circ", "90"),
        ("(1, 2)", "(1,2)"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
        ("10\\%", "10"),
        ("\\text{(C)}", "(C)"),
        ("1,000", "1000"),
        ("\\$18.00", "18"),
        ("5 \\text{ cm}", "5"),
    ],
)
def test_math_equivalences(answer: str, gold: str) -> None:
    assert math_equal(answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("3", "4"), ("\\frac{1}{3}", "0.33"), ("(1,2)", "(2,1)"), ("[1,2]", "(1,2)"), (None, "1")],
)
def test_math_non_equivalences(answer: str | None, gold: str) -> None:
    assert not math_equal(answer, gold)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("The answer is $1,234.50.", 1234.5),
        ("so she has 5 apples and earns 18 dollars", 18),
        ("#### 72", 72),
        ("The answer is 18 dollars (9 x 2).", 18),
        ('{"reasoning": "2+2 = 4", "answer": "4 apples"}', 4),
        ("It costs $5 a week; over 52 weeks that is $260 per year", 260),
        ("The final answer is: -3", -3),
        ("Total: 1,000,000 people", 1_000_000),
        ("\\boxed{42}", 42),
    ],
)
def test_last_number_with_commas_units_and_markers(text: str, number: float) -> None:
    assert extract_number(text) == number


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (B).", "B"),
        ("Answer: c", "C"),
        ("\\boxed{D}", "D"),
        ("After thinking...\n(E)", "E"),
        ("A) is wrong because ..., so the correct option is B", "B"),
    ],
)
def test_choice_letters(text: str, letter: str) -> None:
    assert extract_choice(text) == letter


async def test_graders_score_right_and_wrong_answers() -> None:
    number = _row(gold="1,234")
    name, grade = await _grade("Total: $1,234.", number)
    assert (name, grade.score, grade.extracted) == ("number", 1.0, "1234")
    _, wrong = await _grade("Total: 1,235", number)
    assert wrong.score == 0.0
    _, none = await _grade("no idea", number)
    assert none.score == 0.0 and none.extracted is None
    name, grade = await _grade("So \\boxed{\\frac{1}{2}}.", _row(gold="0.5", grader="math"))
    assert (name, grade.score) == ("math", 1.0)
    name, grade = await _grade("The answer is (b)", _row(gold="B"))
    assert (name, grade.score) == ("choice", 1.0)
    name, grade = await _grade("Paris.", _row(gold="paris", grader="exact"))
    assert (name, grade.score) == ("exact", 1.0)
    assert await grade_answer("anything", _row(reference="a reference")) is None


def test_grader_choice_from_the_row() -> None:
    assert grader_for(_row(gold="42")) == "number"
    assert grader_for(_row(gold="(C)")) == "choice"
    assert grader_for(_row(gold="\\frac{\\pi}{4}")) == "math"
    assert grader_for(_row(test_code="assert f() == 1")) == "code"
    assert grader_for(_row()) is None
    assert grader_for(_row(gold="42"), "exact") == "exact"
    with pytest.raises(EvalConfigError, match="unknown grader 'fuzzy'"):
        grader_for(_row(gold="1"), "fuzzy")


def test_vote_keys_follow_the_grader() -> None:
    row = _row(gold="18")
    assert answer_key("so 18 dollars", row) == answer_key("The answer is $18.00", row) == "18"
    math_row = _row(gold="\\frac12", grader="math")
    assert answer_key("\\boxed{\\dfrac{1}{2}}", math_row) == answer_key(
        "\\boxed{\\frac12}", math_row
    )


async def test_code_grader_passes_and_fails_in_the_sandbox() -> None:
    row = _row(test_code="assert add(2, 3) == 5\n", grader="code")
    good = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    _, passed = await _grade(good, row)
    _, failed = await _grade(bad, row)
    assert passed.score == 1.0 and passed.detail == "passed"
    assert failed.score == 0.0 and "AssertionError" in failed.detail
    # HumanEval style: the answer is only the body; the prompt's code goes first.
    body_row = _row(
        test_code="assert inc(1) == 2\n", entry_point="inc", code_prefix="def inc(x):\n"
    )
    _, body = await _grade("    return x + 1\n", body_row)
    assert body.score == 1.0


def test_extract_code_takes_the_longest_block() -> None:
    text = "```python\nx = 1\n```\nand\n```python\ndef f():\n    return 2\n```"
    assert extract_code(text).startswith("def f()")
    assert extract_code("def g(): pass") == "def g(): pass"
