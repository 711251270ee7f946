"""No secret and no upstream error text leaves the server: replies, streams, logs, metrics.

The upstream here quotes the ``Authorization`` header it received, and internal details, in
its error bodies (as some proxies do). A canary key must never show up in what a client
receives nor in any polyfuse log line, down to debug level.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from server_helpers import LEAKY_DETAILS, EchoingUpstream, RunningServer

from polyfuse.redaction import (
    LOG_REDACTOR,
    RedactingFilter,
    Redactor,
    StreamScrubber,
    client_reason,
    install_log_redaction,
)
from polyfuse.testing import FakeOpenAIServer, FakeReply

UPSTREAM_KEY = "sk-canary-upstream-0123456789abcdef"
SERVER_KEY = "sk-canary-server-fedcba9876543210"
USER = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {SERVER_KEY}"}


KEYS = [UPSTREAM_KEY, SERVER_KEY, UPSTREAM_KEY[:14], SERVER_KEY[:14]]


def leaked(text: str) -> list[str]:
    """The secrets and upstream details found in ``text`` (what a client must never see)."""
    needles = [*KEYS, "hunter2", "10.1.2.3", LEAKY_DETAILS]
    return [n for n in needles if n in text]


@pytest.fixture
def upstream(_fake_switch: tuple[Any, str]) -> Iterator[EchoingUpstream]:
    switch = _fake_switch[0]
    previous = switch.app
    echo = EchoingUpstream(FakeOpenAIServer())
    switch.app = echo
    yield echo
    switch.app = previous


@pytest.fixture
def leaky_server(
    make_server: Callable[..., RunningServer],
    fake_url: str,
    upstream: EchoingUpstream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> RunningServer:
    monkeypatch.setenv("TEST_CANARY_UPSTREAM", UPSTREAM_KEY)
    monkeypatch.setenv("TEST_CANARY_SERVER", SERVER_KEY)
    caplog.set_level(logging.DEBUG, logger="polyfuse")
    endpoint = {"base_url": fake_url, "max_retries": 0, "api_key_env": "TEST_CANARY_UPSTREAM"}
    return make_server(
        endpoints={
            "fake": {**endpoint, "model": "fake-model"},  # supports_n learnt: tries n=3
            "fusor": {**endpoint, "model": "fusor-model"},
        },
        server={"api_keys_env": "TEST_CANARY_SERVER", "allow_return_candidates": True},
    )


def post(server: RunningServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.chat_url, json=body, headers=AUTH, timeout=20)


def sse_events(server: RunningServer, body: dict[str, Any]) -> tuple[int, str]:
    with httpx.stream(
        "POST", server.chat_url, json={**body, "stream": True}, headers=AUTH, timeout=20
    ) as response:
        return response.status_code, response.read().decode()


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> str:
    text = "\n".join(
        f"{r.getMessage()}\n{r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith("polyfuse")
    )
    # The log keeps the upstream's own words (redacted): keys never, details allowed.
    assert not [k for k in KEYS if k in text], text
    return text


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_failing_candidates_leak_nothing_to_the_client_or_the_log(
    leaky_server: RunningServer,
    upstream: EchoingUpstream,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    upstream.fail = {"fake-model": status}
    response = post(leaky_server, {"model": "fusion/fast", "messages": USER})
    assert response.status_code == 502
    assert not leaked(response.text), response.text
    message = response.json()["error"]["message"]
    assert f"HTTP {status}" in message and "#0 (fake)" in message
    assert upstream.echoed and UPSTREAM_KEY in upstream.echoed[0]  # the upstream did echo it
    logs = assert_clean_logs(caplog)
    assert f"HTTP {status}" in logs  # the log says what happened


def test_upstream_400_text_stays_in_the_log(
    leaky_server: RunningServer, upstream: EchoingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fail = {"fake-model": 400}
    response = post(leaky_server, {"model": "fusion/fast", "messages": USER})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "upstream_rejected_request"
    assert "HTTP 400: the endpoint rejected the request as invalid" in error["message"]
    assert not leaked(response.text)
    logs = assert_clean_logs(caplog)
    assert "is invalid" in logs  # the upstream's own words, redacted, are in the log


def test_returned_candidates_and_fallback_reason_are_redacted(
    leaky_server: RunningServer, upstream: EchoingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fail = {"fusor-model": 401}  # the fusor fails: the answer falls back
    body = {"model": "fusion/fast", "messages": USER, "polyfuse": {"return_candidates": True}}
    response = post(leaky_server, body)
    assert response.status_code == 200, response.text
    assert not leaked(response.text), response.text
    extension = response.json()["polyfuse"]
    assert "HTTP 401" in extension["fallback_reason"]
    status, events = sse_events(leaky_server, body)
    assert status == 200 and '"polyfuse"' in events
    assert not leaked(events), events
    upstream.fail = {"fake-model": 500}  # now the candidates fail too
    response = post(leaky_server, body)
    assert not leaked(response.text)
    assert_clean_logs(caplog)


def test_failed_candidates_in_the_extension_carry_short_reasons(
    make_server: Callable[..., RunningServer],
    fake_url: str,
    upstream: EchoingUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_CANARY_UPSTREAM", UPSTREAM_KEY)
    endpoint = {"base_url": fake_url, "max_retries": 0, "api_key_env": "TEST_CANARY_UPSTREAM"}
    server = make_server(
        endpoints={
            "fake": {**endpoint, "model": "fake-model"},
            "other": {**endpoint, "model": "other-model"},
            "fusor": {**endpoint, "model": "fusor-model"},
        },
        presets={"fast": {"pool": ["fake", "other"], "fusor": "fusor"}},
        server={"allow_return_candidates": True},
    )
    upstream.fail = {"other-model": 403}
    body = {"model": "fusion/fast", "messages": USER, "polyfuse": {"return_candidates": True}}
    response = httpx.post(server.chat_url, json=body, timeout=20)
    assert response.status_code == 200, response.text
    failed = [c for c in response.json()["polyfuse"]["candidates"] if c["error"]]
    assert failed and all(c["backend"] == "other" for c in failed)
    assert failed[0]["error"]["message"].startswith("[other] HTTP 403: the endpoint rejected")
    assert not leaked(response.text)


def test_mid_stream_error_event_is_redacted(
    leaky_server: RunningServer, upstream: EchoingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fail_mid_stream = frozenset({"fusor-model"})
    status, events = sse_events(leaky_server, {"model": "fusion/fast", "messages": USER})
    assert status == 200
    data = [line[6:] for line in events.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["code"] == "answer_restarted"
    assert upstream.echoed
    assert not leaked(events), events
    assert_clean_logs(caplog)


def test_refused_n_log_line_carries_the_status_only(
    leaky_server: RunningServer, upstream: EchoingUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.refuse_n = True
    response = post(leaky_server, {"model": "fusion/fast", "messages": USER})
    assert response.status_code == 200, response.text
    logs = assert_clean_logs(caplog)
    assert "refused n=3 (HTTP 400); fanning out" in logs


def test_metrics_and_health_carry_no_secret(
    leaky_server: RunningServer, upstream: EchoingUpstream
) -> None:
    upstream.fail = {"fake-model": 401}
    post(leaky_server, {"model": "fusion/fast", "messages": USER})
    for path in ("/metrics", "/health"):
        assert not leaked(httpx.get(leaky_server.root_url + path, timeout=5).text)


# --------------------------------------------------------------------------- the redactor


def test_redactor_scrubs_keys_fragments_credentials_and_auth_refusals() -> None:
    redact = Redactor([UPSTREAM_KEY, "abc"])  # too-short values are ignored
    assert redact(f"key {UPSTREAM_KEY} bad") == "key *** bad"
    assert UPSTREAM_KEY[:16] not in redact(f"key {UPSTREAM_KEY[:16]}... is invalid")
    assert UPSTREAM_KEY[:16] not in redact(f"token:{UPSTREAM_KEY[:16]}/x key={UPSTREAM_KEY[3:20]}")
    assert "tok-123456" not in redact("Authorization: Bearer tok-123456")
    assert redact("use Bearer abcdefgh") == "use Bearer ***"
    assert redact('{"api_key": "zzz-secret-value"}') == '{"api_key": "***"}'
    assert "sk-partial" not in redact("[x] HTTP 401: Incorrect key sk-partial...ab12")
    assert redact("abc is fine") == "abc is fine"
    assert redact.json({"a": [f"x {UPSTREAM_KEY}"], "b": 1}) == {"a": ["x ***"], "b": 1}


def test_client_reason_keeps_endpoint_status_and_a_reason_of_our_own() -> None:
    redact = Redactor()
    text = f"ServerError: [fusor] HTTP 500: {LEAKY_DETAILS}"
    assert client_reason(text, redact) == (
        "ServerError: [fusor] HTTP 500: the endpoint failed (server error)"
    )
    assert client_reason("[fake] read timeout after 3s to 10.1.2.3", redact) == (
        "[fake] the endpoint timed out"
    )
    assert client_reason("no candidate had an extractable answer", redact) == (
        "no candidate had an extractable answer"
    )


def test_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    install_log_redaction([UPSTREAM_KEY])
    assert LOG_REDACTOR(UPSTREAM_KEY) == "***"
    record = logging.LogRecord(
        "polyfuse.x", logging.ERROR, __file__, 1, "got %s", (UPSTREAM_KEY,), None
    )
    try:
        raise RuntimeError(f"boom {UPSTREAM_KEY}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter(LOG_REDACTOR).filter(record)
    formatted = logging.Formatter().format(record)
    assert "got ***" in formatted and "boom ***" in formatted
    assert UPSTREAM_KEY not in formatted
    assert LOG_REDACTOR in [f.redactor for f in logging.getLogger("polyfuse.server").filters]  # type: ignore[attr-defined]


def test_model_text_keeps_credential_examples_but_loses_known_keys(
    leaky_server: RunningServer, _fake_switch: tuple[Any, str]
) -> None:
    sample = 'curl -H "Authorization: Bearer YOUR_TOKEN" -d api_key=abc123456 (HTTP 401: bad key)'
    answer = f"{sample} and the key {UPSTREAM_KEY}"
    _fake_switch[0].app = EchoingUpstream(
        FakeOpenAIServer(responder=lambda body, index: FakeReply(content=answer))
    )
    body = {"model": "fusion/fast", "messages": USER, "polyfuse": {"return_candidates": True}}
    response = post(leaky_server, body)
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    assert content == f"{sample} and the key ***"
    assert all(c["content"] == content for c in response.json()["polyfuse"]["candidates"])
    _, events = sse_events(leaky_server, body)
    assert "YOUR_TOKEN" in events and "HTTP 401: bad key" in events
    assert UPSTREAM_KEY not in events


def test_a_key_split_across_streamed_tokens_is_scrubbed(
    leaky_server: RunningServer, _fake_switch: tuple[Any, str]
) -> None:
    # The fusor (a leaky upstream) streams the key split across three tokens.
    pieces = ["Your key is ", UPSTREAM_KEY[:5], UPSTREAM_KEY[5:17], UPSTREAM_KEY[17:], " ok sk"]
    _fake_switch[0].app = EchoingUpstream(FakeOpenAIServer(), stream_pieces={"fusor-model": pieces})
    status, events = sse_events(leaky_server, {"model": "fusion/fast", "messages": USER})
    assert status == 200
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in events.splitlines()
        if line.startswith("data: {") and '"choices":[{' in line
    )
    assert text == "Your key is *** ok sk"


def test_stream_scrubber_holds_back_only_possible_key_starts() -> None:
    scrubber = StreamScrubber(Redactor([UPSTREAM_KEY]))
    out = [scrubber.feed(p) for p in ["hello ", "s", "k-canary", "-upstream-0123456789abcdef", "!"]]
    assert out == ["hello ", "", "", "***", "!"]
    assert scrubber.feed("plain text") == "plain text" and scrubber.flush() == ""
    assert scrubber.feed("end sk-can") == "end " and scrubber.flush() == "sk-can"
    assert scrubber.feed("x sk-canary-up") == "x " and scrubber.flush() == "***"
