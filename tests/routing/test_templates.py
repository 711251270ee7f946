"""Thought templates: hybrid selection, building with an LLM, retrieval, the prompt step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfuse import Fusion, OpenAIEndpoint, Pool
from polyfuse.aggregators import Fuse
from polyfuse.errors import InvalidRequestError
from polyfuse.routing import (
    RoutingRecord,
    TemplateBuilder,
    TemplateStore,
    ThoughtTemplate,
    ThoughtTemplates,
    select_top_responses,
)
from polyfuse.routing.templates import copied_numbers
from polyfuse.testing import FakeOpenAIServer, FakeReply, Fault


def _record(
    model: str,
    score: float,
    judge: float | None,
    cost: float,
    query: str = "q1",
    task: str = "math",
) -> RoutingRecord:
    return RoutingRecord(
        query=query,
        task=task,
        model=model,
        score=score,
        judge_score=judge,
        cost_usd=cost,
        response=f"answer of {model}",
    )


def test_hybrid_selection_takes_the_best_by_score_then_by_judge() -> None:
    records = [
        _record("a", 1.0, 0.2, 0.5),
        _record("b", 1.0, 0.9, 0.9),
        _record("c", 1.0, 0.9, 0.1),
        _record("d", 1.0, None, 0.2),
        _record("e", 1.0, 0.5, 0.8),
        _record("f", 1.0, 1.0, 5.0),  # 6th by (score, cost): outside the pool of 5
        _record("g", 0.0, 1.0, 0.0),  # wrong: never a template source
        RoutingRecord(query="q1", task="math", model="h", score=1.0),  # no response
    ]
    (group,) = select_top_responses(records, top=3, pool_size=5)
    assert [r.model for r in group] == ["c", "b", "e"]
    two_tasks = [_record("a", 1.0, None, 1.0, query=f"q{i}") for i in range(4)]
    assert len(select_top_responses(two_tasks, queries_per_task=2)) == 2


def test_selection_explains_logs_without_answers() -> None:
    with pytest.raises(InvalidRequestError, match="no record has a response"):
        select_top_responses([RoutingRecord(query="q", model="m", score=1.0)])
    with pytest.raises(InvalidRequestError, match="empty"):
        select_top_responses([])


def _store() -> TemplateStore:
    templates = [
        ThoughtTemplate(
            query="Add the two integers and divide the sum by three.",
            task="math",
            template="Set up the arithmetic, compute step by step, give the number.",
        ),
        ThoughtTemplate(
            query="Multiply the fractions then simplify the result.",
            task="math",
            template="Multiply numerators and denominators, then reduce.",
        ),
        ThoughtTemplate(
            query="Write a sonnet with rhyme about the sea.",
            task="poems",
            template="Pick the form, plan the rhyme scheme, draft each stanza.",
        ),
    ]
    return TemplateStore(templates)


def test_retrieval_returns_same_task_neighbours_first() -> None:
    store = _store()
    poem_query = "Write a short rhyming poem about the sea."
    by_similarity = store.retrieve(poem_query, k=3)
    assert by_similarity[0].template.task == "poems"
    same_task_first = store.retrieve(poem_query, task="math", k=3)
    assert [m.template.task for m in same_task_first] == ["math", "math", "poems"]
    assert same_task_first[0].same_task and not same_task_first[2].same_task
    assert same_task_first[0].similarity >= same_task_first[1].similarity


def test_store_round_trips_and_names_bad_lines(tmp_path: Path) -> None:
    store = _store()
    path = store.save(tmp_path / "t.jsonl")
    assert [t.template for t in TemplateStore.load(path).templates] == [
        t.template for t in store.templates
    ]
    path.write_text('{"query": "q"}\n')
    with pytest.raises(InvalidRequestError, match=r"t.jsonl:1: .*template"):
        TemplateStore.load(path)


async def test_builder_summarises_with_an_llm_and_reports_failures(
    make_fake: Any, fake_url: str
) -> None:
    def responder(body: dict[str, Any], index: int) -> FakeReply:
        prompt = body["messages"][-1]["content"]
        assert "Answer 1:" in prompt and "answer of" in prompt
        return FakeReply(content="Identify the operation, compute carefully, state the number.")

    fake: FakeOpenAIServer = make_fake(responder=responder)
    groups = select_top_responses(
        [_record("a", 1.0, 0.5, 0.1, query=f"What is {i} + {i}?") for i in range(3)]
    )
    fake.inject(Fault("status", status=400, times=1))
    builder = TemplateBuilder(OpenAIEndpoint(fake_url, "summarizer", api_key=None), concurrency=1)
    built, failed = await builder.abuild(groups)
    assert len(built) == 2 and len(failed) == 1 and "BadRequestError" in failed[0].error
    assert built[0].template.startswith("Identify") and built[0].models == ["a"]
    assert built[0].summarizer == "summarizer" and built[0].task == "math"


async def test_builder_rejects_templates_that_copy_the_question_numbers(
    make_fake: Any, fake_url: str
) -> None:
    replies = iter(
        [
            "Add 12 and 35 to get 47.",  # copies the question: rejected, reported
            "Add the two quantities, then state the sum as a number.",
        ]
    )

    def responder(body: dict[str, Any], index: int) -> FakeReply:
        return FakeReply(content=next(replies))

    make_fake(responder=responder)
    groups = [
        select_top_responses([_record("a", 1.0, None, 0.1, query=q)])[0]
        for q in ("Tom has 12 apples and buys 35 more. How many?", "What is 1,250 + 7?")
    ]
    builder = TemplateBuilder(OpenAIEndpoint(fake_url, "small", api_key=None), concurrency=1)
    built, failed = await builder.abuild(groups)
    assert [f.error for f in failed] == [
        "InvalidRequestError: small copied the question's numbers 12, 35 into the template "
        "instead of abstracting them; use a stronger summariser"
    ]
    assert [t.query for t in built] == ["What is 1,250 + 7?"]


def test_copied_numbers_ignore_single_digits_and_formatting() -> None:
    assert copied_numbers("Pay 1,250 for 3 items, 40 each", "it costs 1250 and 3 and 41") == [
        "1250"
    ]
    assert copied_numbers("no numbers here", "12 34") == []


async def test_wrapped_candidates_see_the_templates_and_the_fusor_does_not(
    fake: FakeOpenAIServer, fake_url: str
) -> None:
    steps = ThoughtTemplates(_store(), task="math", k=2)
    small = OpenAIEndpoint(fake_url, "small", api_key=None)
    fusor = OpenAIEndpoint(fake_url, "fusor", api_key=None)
    async with Fusion(Pool.repeat(steps.wrap(small), 2), Fuse(fusor)) as fusion:
        await fusion.arun(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Add 3 and 4, then divide by 7."},
            ]
        )
    candidates = [r for r in fake.requests if r["model"] == "small"]
    assert sum(r.get("n", 1) for r in candidates) == 2
    system = candidates[0]["messages"][0]["content"]
    assert system.startswith("Be brief.")
    assert "Set up the arithmetic" in system and "Multiply numerators" in system
    assert "sonnet" not in system  # k=2: the two math templates only
    fused = next(r for r in fake.requests if r["model"] == "fusor")
    assert "Set up the arithmetic" not in str(fused["messages"])
    request = steps.apply("Add 3 and 4.")
    assert request.messages[0].role == "system" and request.messages[1].content == "Add 3 and 4."
