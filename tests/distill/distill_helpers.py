"""Helpers for the distill tests: a responder that plays teachers, fusor and judge, and files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from polyfuse.distill import DistillSpec
from polyfuse.testing import FakeOpenAIServer

TEACHERS = ("alpha", "beta", "gamma")
SCORES = {"alpha": 8, "beta": 3, "gamma": 5}
FUSED_SCORE = 9


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def responder(body: dict[str, Any], index: int) -> str:
    """Teachers answer ``<model> says: <question>``; the fusor writes ``Fused: <question>``;
    the judge scores alpha 8, beta 3, gamma 5 and anything else 9."""
    messages = body["messages"]
    system = _text(messages[0]["content"]) if messages[0]["role"] == "system" else ""
    user = _text([m for m in messages if m["role"] == "user"][-1]["content"])
    if system.startswith("You are a strict grader"):
        graded = user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
        for name, score in SCORES.items():
            if graded.startswith(name):
                return f"Solid. Score: {score}"
        return f"Best. Score: {FUSED_SCORE}"
    if system.startswith("You are the final editor"):
        question = user.split("<request>\n", 1)[-1].split("\n</request>", 1)[0]
        return f"Fused: {question}"
    return f"{body['model']} says: {user}"


def panel_spec(url: str, **options: Any) -> DistillSpec:
    """alpha, beta and gamma as teachers; ``fusor`` fuses and judges."""
    endpoint_options = options.pop("endpoint_options", {"max_retries": 0})
    return DistillSpec.from_endpoints(
        [f"{name}@{url}" for name in TEACHERS],
        fusor=f"fusor@{url}",
        endpoint_options=endpoint_options,
        **options,
    )


def write_prompts(path: Path, rows: Iterable[Any]) -> Path:
    """One JSON line per row (strings are written as they are)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def teacher_requests(fake: FakeOpenAIServer) -> list[dict[str, Any]]:
    """The requests the fake got from teachers (not fusor or judge)."""
    return [r for r in fake.requests if r.get("model") in TEACHERS]
