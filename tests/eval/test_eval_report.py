"""The report escapes every model-provided string and embeds its plots."""

from __future__ import annotations

import json
import re
from pathlib import Path

from eval_helpers import write_jsonl

from polyfuse.eval import aevaluate

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _pools(path: Path) -> Path:
    rows = []
    for i in range(12):
        gold = str(i + 1)
        rows.append(
            {
                "id": f"p{i}",
                "prompt": f"{EVIL} question {i}",
                "gold": gold,
                "task": "evil<b>task</b>",
                "language": "en" if i % 2 else "fr",
                "candidates": [
                    {
                        "model": f"{EVIL}-model",
                        "text": f"{EVIL} The answer is {gold}",
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                    },
                    {
                        "model": "plain",
                        "text": "The answer is 0",
                        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                    },
                    {
                        "model": "third",
                        "text": f"The answer is {gold}",
                        "usage": {"prompt_tokens": 10, "completion_tokens": 4},
                    },
                ],
            }
        )
    return write_jsonl(path, rows)


async def test_html_is_self_contained_and_escapes_model_text(tmp_path: Path) -> None:
    result = await aevaluate(
        _pools(tmp_path / "pools.jsonl"),
        tmp_path / "out",
        replay=True,
        strategies="single,vote",
        fsync=False,
        title=f"title {EVIL}",
    )
    html = result.report_html.read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
    assert re.search(r"<img alt='plot' src='data:image/svg\+xml;base64,[A-Za-z0-9+/=]+'>", html)
    assert "http://" not in html.split("<body>", 1)[1] and "https://" not in html
    assert "Content-Security-Policy" in html
    # A language breakdown appears when rows have languages.
    assert "By language" in html and ">fr<" in html
    # Tokens per prompt: single = 15; vote = all three candidates = 42.
    task = result.analysis.tasks[0]
    assert task.costs["single"].tokens == 15 and task.costs["vote"].tokens == 42
    md = result.report_md.read_text(encoding="utf-8")
    assert "## Recommendations" in md and "evil<b>task</b> (accuracy)" in md
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["tasks"][0]["recommendation"] == task.recommendation
