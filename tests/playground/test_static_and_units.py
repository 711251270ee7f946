"""The page's files stay free of HTML sinks and inline code; the pieces behind the events
(passages, error reduction, the engine's new events) do what they say."""

from __future__ import annotations

import re
from typing import Any

import pytest

from polyfuse import (
    CandidateCancelled,
    CandidateFailed,
    CandidateToken,
    Fusion,
    FusionDone,
    OpenAIEndpoint,
    Pool,
    QuorumPolicy,
)
from polyfuse.aggregators import MajorityVote
from polyfuse.redaction import Redactor
from polyfuse.results import Candidate, ErrorInfo
from polyfuse.server.events import public_error, public_reason
from polyfuse.server.passages import attribute_passages, split_passages
from polyfuse.server.playground import ASSETS, STATIC_DIR
from polyfuse.testing import FakeReply, Fault

# -- the static files


def test_the_script_never_parses_strings_as_html_or_code() -> None:
    script = (STATIC_DIR / "playground.js").read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setAttribute("on',
        "srcdoc",
    ):
        assert sink not in script, sink


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", page) == [
        '<script src="/playground/playground.js" defer>'
    ]
    assert "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)
    assert not re.search(r"\sstyle\s*=", page)
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


def test_the_static_folder_holds_only_what_is_served() -> None:
    names = {p.name for p in STATIC_DIR.iterdir()}
    assert names == {"index.html", *ASSETS}


# -- passages


def cand(index: int, text: str, status: str = "ok") -> Candidate:
    return Candidate(index=index, backend="b", status=status, content=text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "One sentence.",
        "First one. Second one!\nA line\n\n  Indented? yes.  ",
        "\n\nLeading blank lines. Then text.",
        "- item one\n- item two\n",
    ],
)
def test_passages_keep_every_character(text: str) -> None:
    assert "".join(split_passages(text)) == text
    assert all(p.strip() for p in split_passages(text)[:-1])


def test_each_passage_names_the_candidates_it_came_from() -> None:
    candidates = [
        cand(0, "Water boils at one hundred degrees at sea level."),
        cand(1, "At altitude water boils at a lower temperature. Pressure matters."),
        cand(2, "Water boils at one hundred degrees at sea level, as everyone knows."),
        cand(3, "", status="failed"),
    ]
    answer = (
        "Water boils at one hundred degrees at sea level. "
        "At altitude water boils at a lower temperature. Something nobody said."
    )
    passages = attribute_passages(answer, candidates)
    assert [p.sources for p in passages] == [[0, 2], [1], []]
    assert passages[0].overlap[0] == 1.0 and 3 not in passages[0].overlap
    assert passages[0].to_dict()["overlap"]["0"] == 1.0


def test_a_passage_without_words_has_no_source() -> None:
    (passage,) = attribute_passages("...", [cand(0, "...")])
    assert passage.sources == [] and passage.overlap == {}


# -- what clients learn about failures


REDACT = Redactor(["sk-abcdef123456"])


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (
            ErrorInfo(
                type="ServerError", message="[a] HTTP 503: sk-abcdef123456 oops", status_code=503
            ),
            "[a] HTTP 503: the endpoint failed (server error)",
        ),
        (
            ErrorInfo(type="APITimeoutError", message="[a] read timeout at http://10.0.0.1"),
            "[a] the endpoint timed out",
        ),
        (
            ErrorInfo(type="ProtocolError", message="[a] malformed JSON: {secret"),
            "[a] the endpoint sent a malformed reply",
        ),
        (
            ErrorInfo(type="Cancelled", message="cancelled: quorum of 2 reached"),
            "cancelled: quorum of 2 reached",
        ),
        (
            ErrorInfo(type="APIStatusError", message="[a] HTTP 599: x", status_code=599),
            "[a] HTTP 599: the endpoint failed (server error)",
        ),
    ],
)
def test_errors_name_endpoint_status_and_our_reason_never_the_upstream_text(
    info: ErrorInfo, message: str
) -> None:
    assert public_error(info, REDACT) == {
        "type": info.type,
        "status_code": info.status_code,
        "message": message,
    }


@pytest.mark.parametrize(
    ("reason", "public"),
    [
        (
            "ServerError: [fusor] HTTP 500: sk-abcdef123456 said no; returned candidate #1 instead",
            "ServerError: [fusor] HTTP 500: the endpoint failed (server error); "
            "returned candidate #1 instead",
        ),
        (
            "AggregationError: the fusor f failed: [f] HTTP 429: slow down",
            "AggregationError: the fusor f failed: [f] HTTP 429: the endpoint is rate limiting "
            "the server",
        ),
        (
            "AggregationError: the fusor f returned an empty answer",
            "AggregationError: the fusor f returned an empty answer",
        ),
    ],
)
def test_reasons_keep_our_words_and_the_fallback_but_not_the_upstreams(
    reason: str, public: str
) -> None:
    assert public_reason(reason, REDACT) == public


# -- the engine's new events


def by_model(body: dict[str, Any], index: int) -> FakeReply:
    return FakeReply(content=f"{body['model']} answers {index}")


async def test_streamed_candidates_emit_their_tokens_in_order(
    make_fake: Any, fake_url: str
) -> None:
    make_fake(responder=by_model)
    endpoint = OpenAIEndpoint(fake_url, "m", max_retries=0)
    fusion = Fusion(
        Pool.repeat(endpoint, 2), MajorityVote("exact"), QuorumPolicy(stream_candidates=True)
    )
    async with fusion:
        events = [e async for e in fusion.astream("hi")]
    done = events[-1]
    assert isinstance(done, FusionDone)
    for cand_ in done.result.candidates:
        tokens = [
            e.delta for e in events if isinstance(e, CandidateToken) and e.index == cand_.index
        ]
        assert "".join(tokens) == cand_.content and len(tokens) > 1


async def test_tokens_are_not_emitted_without_streaming(make_fake: Any, fake_url: str) -> None:
    make_fake(responder=by_model)
    fusion = Fusion(Pool.repeat(OpenAIEndpoint(fake_url, "m"), 2), MajorityVote("exact"))
    async with fusion:
        events = [e async for e in fusion.astream("hi")]
    assert not [e for e in events if isinstance(e, CandidateToken)]


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (QuorumPolicy(quorum=1), "quorum"),
        (QuorumPolicy(deadline=0.5), "deadline"),
    ],
)
async def test_cancelled_stragglers_get_their_own_event(
    make_fake: Any, fake_url: str, policy: QuorumPolicy, reason: str
) -> None:
    fake = make_fake(responder=by_model)
    fake.inject(Fault("slow_first_byte", delay_s=60, match_model="slow", times=5))
    fast = OpenAIEndpoint(fake_url, "fast", max_retries=0)
    slow = OpenAIEndpoint(fake_url, "slow", max_retries=0)
    fusion = Fusion(Pool.panel([fast, slow]), MajorityVote("exact"), policy)
    try:
        async with fusion:
            events = [e async for e in fusion.astream("hi")]
    finally:
        fake.release_waiters()
    cancelled = [e for e in events if isinstance(e, CandidateCancelled)]
    assert len(cancelled) == 1 and cancelled[0].reason == reason
    assert isinstance(cancelled[0], CandidateFailed)  # old handlers still see it
    assert cancelled[0].candidate.status == "cancelled"
    assert cancelled[0].candidate.index == 1
