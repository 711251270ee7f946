"""The Ray engine generates the same eval records as the asyncio engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import make_responder, presets_file, read_jsonl, sum_rows, write_jsonl

from polyfuse.eval import aevaluate
from polyfuse.testing import FakeOpenAIServer

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


def _answers(path: Path) -> dict[str, dict[str, object]]:
    return {
        r["input_hash"]: {s: e["answer"] for s, e in r["strategies"].items()}
        for r in read_jsonl(path)
    }


@pytest.mark.timeout(300)
async def test_ray_and_asyncio_engines_agree(
    tmp_path: Path,
    local_ray: None,
    make_fake: Callable[..., FakeOpenAIServer],
    fake_url: str,
) -> None:
    make_fake(responder=make_responder())
    data = write_jsonl(tmp_path / "sums.jsonl", sum_rows(8))
    options: dict[str, Any] = {
        "strategies": "single,vote,usc,fuse",
        "config": presets_file(tmp_path / "p.toml", fake_url),
        "preset": "panel",
        "fsync": False,
    }
    local = await aevaluate(data, tmp_path / "local", **options)
    distributed = await aevaluate(data, tmp_path / "ray", engine="ray", **options)
    assert distributed.generation.summary.stats.written == 8
    assert _answers(tmp_path / "ray" / "generations.jsonl") == _answers(
        tmp_path / "local" / "generations.jsonl"
    )
    means = {s: e.mean for s, e in distributed.analysis.tasks[0].estimates.items()}
    assert means == {s: e.mean for s, e in local.analysis.tasks[0].estimates.items()}
