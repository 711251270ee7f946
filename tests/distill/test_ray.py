"""The Ray Data engine makes the same records as the asyncio engine (one local Ray start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from distill_helpers import panel_spec, read_jsonl, write_prompts

from polyfuse.distill import PriceTable, distill
from polyfuse.testing import FakeOpenAIServer, Fault

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timing (latencies and timestamps differ between runs)."""
    provenance = {k: v for k, v in record["provenance"].items() if k != "timing"}
    return {**record, "provenance": provenance}


def _by_hash(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keyed = {}
    for record in records:
        holder = record.get("provenance", record)
        keyed[holder["input_hash"]] = _comparable(record) if "provenance" in record else record
    return keyed


def test_both_engines_make_the_same_records(
    tmp_path: Path, local_ray: None, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    questions = [f"Which number comes after {i}?" for i in range(12)]
    rows = [{"prompt": q, "id": i} for i, q in enumerate(questions)]
    source = write_prompts(tmp_path / "p.jsonl", [*rows, "{broken line"])
    spec = panel_spec(
        fake_url,
        aggregations=("fuse", "best-of-n"),
        format="preference",
        score_primary=True,
        endpoint_options={"max_retries": 0, "max_concurrency": 4},
    )
    prices = PriceTable.parse(["alpha=1/2", "fusor=0.5/1.5"])
    local = distill(source, tmp_path / "local.jsonl", spec, prices=prices)

    # The Ray run resumes: two rows are already done, and one teacher fails once.
    done = (tmp_path / "local.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_text("".join(done[:2]), encoding="utf-8")
    panel_fake.inject(Fault("status", status=400, match_model="gamma"))
    remote = distill(
        source, tmp_path / "ray.jsonl", spec, prices=prices, engine="ray", ray_actors=2
    )

    assert local.stats.written == len(questions)
    assert remote.already_done == 2 and remote.stats.written == len(questions) - 2
    assert remote.problem_count == 1
    local_records = _by_hash(read_jsonl(tmp_path / "local.jsonl"))
    ray_records = _by_hash(read_jsonl(tmp_path / "ray.jsonl"))
    assert set(ray_records) == set(local_records)
    failed_teacher = [
        h
        for h, r in ray_records.items()
        if any(t["status"] != "ok" for t in r["provenance"]["teachers"])
    ]
    assert len(failed_teacher) == 1
    for digest, record in local_records.items():
        if digest not in failed_teacher:
            assert ray_records[digest] == record
