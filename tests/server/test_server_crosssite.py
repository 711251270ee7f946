"""Cross-site safety: no simple cross-site POST, no DNS rebinding on a keyless server,
security headers on every reply, no redirect echoing the Host, every error in OpenAI shape."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from server_helpers import RunningServer

from polyfuse.server.catalog import PresetCatalog
from polyfuse.server.guards import is_loopback_host
from polyfuse.testing import FakeOpenAIServer

USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "fusion/fast", "messages": USER}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def assert_secure(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_cross_site_text_plain_post_runs_nothing(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    # What a form or fetch() "simple request" from another site looks like: no preflight.
    response = httpx.post(
        server.chat_url,
        content=b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"content-type": "text/plain", "origin": "http://evil.example"},
        timeout=10,
    )
    error = error_of(response, 415)
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]
    no_type = httpx.post(server.chat_url, content=b"{}", timeout=10)
    assert error_of(no_type, 415)["code"] == "unsupported_media_type"
    assert fake.requests == []  # no upstream call was made
    with_charset = httpx.post(
        server.chat_url,
        content=httpx.Request("POST", "http://x", json=BODY).content,
        headers={"content-type": "application/json; charset=utf-8"},
        timeout=20,
    )
    assert with_charset.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8090", "192.168.1.20", "[::2]"])
def test_keyless_server_refuses_foreign_hosts(
    server: RunningServer, fake: FakeOpenAIServer, host: str
) -> None:
    for response in (
        httpx.post(server.chat_url, json=BODY, headers={"host": host}, timeout=10),
        httpx.get(server.base_url + "/models", headers={"host": host}, timeout=10),
        httpx.get(server.root_url + "/health", headers={"host": host}, timeout=10),
    ):
        error = error_of(response, 403)
        assert error["code"] == "host_not_allowed"
        assert_secure(response)
    assert fake.requests == []


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8090", "127.0.0.1:1", "[::1]:8090", "app.localhost"]
)
def test_keyless_server_accepts_loopback_hosts(server: RunningServer, host: str) -> None:
    assert httpx.get(server.base_url + "/models", headers={"host": host}, timeout=10).is_success


def test_allowed_hosts_and_keys_open_other_names(
    make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    named = make_server(server={"allowed_hosts": ["fusion.internal"]})
    assert httpx.get(named.base_url + "/models", headers={"host": "fusion.internal:80"}).is_success
    assert (
        httpx.get(named.base_url + "/models", headers={"host": "other.internal"}).status_code == 403
    )
    monkeypatch.setenv("TEST_XS_KEYS", "sk-xs-key-123")
    keyed = make_server(server={"api_keys_env": "TEST_XS_KEYS"})
    headers = {"host": "fusion.example.com", "authorization": "Bearer sk-xs-key-123"}
    assert httpx.get(keyed.base_url + "/models", headers=headers, timeout=10).is_success


def test_every_reply_carries_nosniff_and_no_store(server: RunningServer) -> None:
    replies = [
        httpx.get(server.base_url + "/models", timeout=10),
        httpx.get(server.root_url + "/health", timeout=10),
        httpx.post(server.chat_url, json=BODY, timeout=20),
        httpx.post(server.chat_url, json={"model": "nope", "messages": USER}, timeout=10),
        httpx.get(server.root_url + "/nowhere", timeout=10),
    ]
    with httpx.stream("POST", server.chat_url, json={**BODY, "stream": True}, timeout=20) as stream:
        stream.read()
        replies.append(stream)
    for response in replies:
        assert_secure(response)


def test_trailing_slashes_are_served_not_redirected(server: RunningServer) -> None:
    evil = {"host": "localhost.evil.example"}
    response = httpx.get(server.base_url + "/models/", timeout=10)
    assert response.status_code == 200 and "location" not in response.headers
    assert httpx.post(server.chat_url + "/", json=BODY, timeout=20).status_code == 200
    refused = httpx.get(server.base_url + "/models/", headers=evil, timeout=10)
    assert refused.status_code == 403 and "location" not in refused.headers


def test_cors_refusals_use_the_error_shape(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(server={"cors_origins": ["http://app.example"]})
    preflight = {
        "origin": "http://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    response = httpx.options(server.chat_url, headers=preflight, timeout=10)
    error = error_of(response, 400)
    assert "Disallowed CORS origin" in error["message"]
    assert_secure(response)
    allowed = httpx.options(
        server.chat_url, headers={**preflight, "origin": "http://app.example"}, timeout=10
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://app.example"


def test_internal_errors_are_openai_shaped_and_logged_once(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug with secret sk-canary-bug-0123456789")

    monkeypatch.setattr(PresetCatalog, "request_for", broken)
    caplog.set_level(logging.INFO)
    response = httpx.post(server.chat_url, json=BODY, timeout=10)
    error = error_of(response, 500)
    assert error["type"] == "server_error" and "sk-canary" not in response.text
    tracebacks = [r for r in caplog.records if r.exc_text and "RuntimeError" in r.exc_text]
    assert len(tracebacks) == 1


def test_loopback_host_names() -> None:
    assert is_loopback_host("127.0.0.2:80") and is_loopback_host("[::1]")
    assert is_loopback_host("LOCALHOST.") and not is_loopback_host("localhost.evil.example")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("")
