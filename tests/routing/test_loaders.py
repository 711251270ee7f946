"""Loaders: LLMRouter files and fusion results → routing records; the table's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from routing_helpers import planted_records, write_llmrouter

from polyfuse import Fusion, OpenAIEndpoint, Pool
from polyfuse.aggregators import MajorityVote
from polyfuse.errors import InvalidRequestError
from polyfuse.routing import (
    RoutingRecord,
    RoutingTable,
    load_llmrouter,
    read_routing_log,
    records_from_fusion,
    write_routing_log,
)
from polyfuse.routing.loaders import ModelPrice
from polyfuse.routing.tokens import count_tokens


def test_llmrouter_files_become_records_with_estimated_costs(tmp_path: Path) -> None:
    write_llmrouter(tmp_path)
    records = load_llmrouter(tmp_path, "train", output_tokens=100)
    assert len(records) == 4
    first = records[0]
    assert (first.query, first.task, first.model, first.score) == (
        "What is 2 + 3?",
        "math",
        "model-a",
        1.0,
    )
    tokens = count_tokens(["What is 2 + 3?"])[0]
    assert first.prompt_tokens == tokens and first.completion_tokens == 100
    # model-a: $1/M in, $2/M out
    assert first.cost_usd == pytest.approx((tokens * 1.0 + 100 * 2.0) / 1e6)
    assert first.cost_estimated is True
    assert records[3].task == "poems" and records[3].score == 0.5


def test_records_round_trip_through_jsonl(tmp_path: Path) -> None:
    records = planted_records(3)
    path = tmp_path / "log.jsonl"
    assert write_routing_log(path, records, append=False) == len(records)
    assert list(read_routing_log(path)) == records


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda rows, q: rows[0].pop("scores"), "missing column scores"),
        (lambda rows, q: q.pop(0), "task is unknown"),
        (lambda rows, q: rows[0]["scores"].update({"model-z": 1.0}), "'model-z' has no price"),
        (lambda rows, q: q[0].update(task_name=" "), "task_name is empty"),
    ],
)
def test_bad_llmrouter_files_name_the_problem(tmp_path: Path, mutate: object, message: str) -> None:
    write_llmrouter(tmp_path)
    rows = json.loads((tmp_path / "train.json").read_text())
    lines = (tmp_path / "default_query_train.jsonl").read_text().splitlines()
    queries = [json.loads(line) for line in lines]
    mutate(rows, queries)  # type: ignore[operator]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    (tmp_path / "default_query_train.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    with pytest.raises(InvalidRequestError, match=message):
        load_llmrouter(tmp_path, "train")


def test_a_log_line_missing_a_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"query": "q", "model": "m", "score": 1}\n{"query": "q", "model": "m"}\n')
    with pytest.raises(InvalidRequestError, match=r"log.jsonl:2: .*score"):
        list(read_routing_log(path))


def test_table_rejects_one_model_an_empty_task_and_an_empty_log() -> None:
    one = [RoutingRecord(query="q", model="only", score=1.0, task="t")]
    with pytest.raises(InvalidRequestError, match="one model only"):
        RoutingTable.from_records(one)
    empty_task = [
        RoutingRecord(query="q", model="a", score=1.0, task=""),
        RoutingRecord(query="q", model="b", score=1.0, task=""),
    ]
    with pytest.raises(InvalidRequestError, match="empty task"):
        RoutingTable.from_records(empty_task)
    with pytest.raises(InvalidRequestError, match="empty"):
        RoutingTable.from_records([])
    with pytest.raises(InvalidRequestError, match="no records for model-z"):
        RoutingTable.from_records(planted_records(2), models=["model-a", "model-z"])


def test_table_pivots_queries_by_models() -> None:
    table = RoutingTable.from_records(planted_records(4))
    assert table.models == ["model-a", "model-b", "model-c"]
    assert len(table) == 8 and table.task_names == ["math", "poems"]
    assert table.scores[0].tolist() == [1.0, 0.0, 0.0]
    assert table.costs[0, 2] == pytest.approx(200 * 0.1 / 1e6)


async def test_fusion_results_become_one_record_per_candidate_with_its_model(
    fake_url: str,
) -> None:
    pool = Pool.panel(
        [
            OpenAIEndpoint(fake_url, "alpha", api_key=None, name="a"),
            OpenAIEndpoint(fake_url, "beta", api_key=None, name="b"),
        ]
    )
    async with Fusion(pool, MajorityVote()) as fusion:
        result = await fusion.arun("What is 2 + 3?")
    prices = {"alpha": ModelPrice(1.0, 2.0)}
    records = records_from_fusion(
        result,
        "What is 2 + 3?",
        lambda text: 1.0 if "Answer 0" in text else 0.0,
        task="math",
        prices=prices,
    )
    assert sorted(r.model for r in records) == ["alpha", "beta"]
    alpha = next(r for r in records if r.model == "alpha")
    assert alpha.response and alpha.task == "math" and alpha.latency_s is not None
    assert alpha.prompt_tokens and alpha.completion_tokens
    assert alpha.cost_usd == pytest.approx(
        (alpha.prompt_tokens * 1.0 + alpha.completion_tokens * 2.0) / 1e6
    )
    assert next(r for r in records if r.model == "beta").cost_usd is None
    with pytest.raises(InvalidRequestError, match="no score for candidate"):
        records_from_fusion(result, "q", {0: 1.0})
