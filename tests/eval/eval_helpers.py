"""Helpers for the eval tests: a responder that plays teachers, fusor, selector and judges on the
fake server, a presets file for it, and small generated data sets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TEACHERS = ("alpha", "beta", "gamma")

PairwiseScript = Callable[[str, str], str]
"""(answer A, answer B) -> the judge's reply."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _tag(text: str, tag: str) -> str:
    return text.split(f"<{tag}>\n", 1)[1].split(f"\n</{tag}>", 1)[0]


def default_pairwise(a: str, b: str) -> str:
    """Prefers the answer that mentions 'Fused', else a tie."""
    if "Fused" in a and "Fused" not in b:
        return "A is better. [[A]]"
    if "Fused" in b and "Fused" not in a:
        return "B is better. [[B]]"
    return "Equally good. [[TIE]]"


def make_responder(pairwise: PairwiseScript = default_pairwise, rubric: str = "Rating: [[7]]"):
    """Teachers: alpha and beta answer ``x+y`` right, gamma answers one more; the fusor answers
    right; the USC selector picks Response 3; the Best-of-N grader scores 8; judges follow the
    scripts."""

    def responder(body: dict[str, Any], index: int) -> str:
        messages = body["messages"]
        system = _text(messages[0]["content"]) if messages[0]["role"] == "system" else ""
        user = _text([m for m in messages if m["role"] == "user"][-1]["content"])
        numbers = (
            [int(n) for n in re.findall(r"What is (\d+)\+(\d+)", user)[-1:][0]]
            if re.search(r"What is (\d+)\+(\d+)", user)
            else [0, 0]
        )
        total = sum(numbers)
        if system.startswith("You are an impartial judge comparing"):
            return pairwise(_tag(user, "answer_A"), _tag(user, "answer_B"))
        if system.startswith("You are an impartial judge rating"):
            return rubric
        if system.startswith("You are a strict grader"):
            return "Solid. Score: 8"
        if system.startswith("You compare several responses"):
            return "The most consistent response is Response 3"
        if system.startswith("You are the final editor"):
            return f"Fused: the answer is {total}."
        model = body["model"]
        if model == "gamma":
            return f"I think it is {total + 1}. The answer is {total + 1}."
        return f"{model}: {numbers[0]} plus {numbers[1]}. The answer is {total}."

    return responder


def presets_file(path: Path, url: str, *, strategy: str = "fuse") -> Path:
    """alpha, beta, gamma as the pool (one sample each); ``fusor`` fuses and judges."""
    endpoints = "\n".join(
        f'[endpoints.{name}]\nbase_url = "{url}"\nmodel = "{name}"\nmax_retries = 0\n'
        for name in (*TEACHERS, "fusor")
    )
    path.write_text(
        endpoints
        + f'\n[presets.panel]\npool = ["alpha", "beta", "gamma"]\nn = 1\nfusor = "fusor"\n'
        f'strategy = "{strategy}"\n',
        encoding="utf-8",
    )
    return path


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One JSON line per row."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def sum_rows(count: int, *, gold: bool = True) -> list[dict[str, Any]]:
    """``What is x+y?`` prompts (with the gold sum unless ``gold`` is false)."""
    rows = []
    for i in range(count):
        row: dict[str, Any] = {"id": f"q{i}", "prompt": f"What is {i}+{i + 3}?", "task": "sums"}
        if gold:
            row["gold"] = str(2 * i + 3)
        rows.append(row)
    return rows
