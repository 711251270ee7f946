"""TLS with a private CA (trustme), client certificates, and proxies from the environment."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from http_servers import ThreadServer, chat_body, response, thread_server

from polyfuse import APIConnectionError, InvalidRequestError, OpenAIEndpoint
from polyfuse.messages import ChatRequest


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def _no_proxy_or_ca_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _https_server(ca: trustme.CA, *, client_ca: trustme.CA | None = None):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED

    def handler(conn: socket.socket, server: ThreadServer) -> None:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            server.state.setdefault("refused", []).append(exc)
            return
        with tls:
            pending = bytearray()
            while server.read(tls, pending) is not None:  # type: ignore[arg-type]
                tls.sendall(response(chat_body("over tls")))

    return thread_server(handler)


def _https_url(server: ThreadServer) -> str:
    return f"https://127.0.0.1:{server.port}/v1"


async def _ask(endpoint: OpenAIEndpoint) -> str | None:
    try:
        [completion] = await endpoint.complete(ChatRequest.build("hi"))
    finally:
        await endpoint.aclose()
    return completion.content


async def test_private_ca_refused_without_verify_and_accepted_with_it(
    ca: trustme.CA, ca_file: str
) -> None:
    with _https_server(ca) as server:
        url = _https_url(server)
        with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await _ask(OpenAIEndpoint(url, "m", max_retries=0))
        assert server.posts == 0
        assert await _ask(OpenAIEndpoint(url, "m", verify=ca_file)) == "over tls"
        context = ssl.create_default_context()
        ca.configure_trust(context)
        assert await _ask(OpenAIEndpoint(url, "m", verify=context)) == "over tls"
        assert await _ask(OpenAIEndpoint(url, "m", verify=False)) == "over tls"


async def test_ssl_cert_file_is_honoured_like_httpx(
    ca: trustme.CA, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with _https_server(ca) as server:
        url = _https_url(server)
        assert await _ask(OpenAIEndpoint(url, "m")) == "over tls"
        with pytest.raises(APIConnectionError):
            await _ask(OpenAIEndpoint(url, "m", trust_env=False, max_retries=0))


async def test_client_certificate_required_by_the_server(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    client_ca = trustme.CA()
    client_pem = tmp_path / "client.pem"
    client_ca.issue_cert("client@polyfuse.test").private_key_and_cert_chain_pem.write_to_path(
        str(client_pem)
    )
    with _https_server(ca, client_ca=client_ca) as server:
        url = _https_url(server)
        with pytest.raises(APIConnectionError):
            await _ask(OpenAIEndpoint(url, "m", verify=ca_file, max_retries=0))
        assert server.posts == 0
        answer = await _ask(OpenAIEndpoint(url, "m", verify=ca_file, cert=str(client_pem)))
    assert answer == "over tls"
    assert server.posts == 1


def test_unreadable_ca_bundle_or_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="CA bundle"):
        OpenAIEndpoint("https://127.0.0.1:1/v1", "m", verify=str(tmp_path / "missing.pem"))
    with pytest.raises(InvalidRequestError, match="client certificate"):
        OpenAIEndpoint("https://127.0.0.1:1/v1", "m", cert=str(tmp_path / "missing.pem"))


# ------------------------------------------------------------------------------ proxies


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _proxy(conn: socket.socket, server: ThreadServer) -> None:
    """A forward proxy (absolute-form requests) and a CONNECT tunnel, as a test needs them."""
    pending = bytearray()
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return
        pending += data
    line = bytes(pending.split(b"\r\n", 1)[0])
    server.state.setdefault("lines", []).append(line)
    method, target, _ = line.split(b" ", 2)
    if method == b"CONNECT":
        host, port = target.rsplit(b":", 1)
        del pending[: pending.index(b"\r\n\r\n") + 4]
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        authority = target.split(b"/")[2]
        host, port = authority.rsplit(b":", 1)
    upstream = socket.create_connection((host.decode(), int(port)))
    with upstream:
        if pending:
            upstream.sendall(bytes(pending))
        back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
        back.start()
        _pipe(conn, upstream)
        back.join(10)


@pytest.fixture
def proxy() -> Iterator[ThreadServer]:
    with thread_server(_proxy) as server:
        yield server


def _http_server():
    def handler(conn: socket.socket, server: ThreadServer) -> None:
        pending = bytearray()
        while (request := server.read(conn, pending)) is not None:
            server.state.setdefault("lines", []).append(request.split(b"\r\n", 1)[0])
            conn.sendall(response(chat_body("via proxy")))

    return thread_server(handler)


async def test_http_proxy_is_used_when_http_proxy_is_set(
    proxy: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    with _http_server() as server:
        assert await _ask(OpenAIEndpoint(server.base_url, "m")) == "via proxy"
        target = f"http://127.0.0.1:{server.port}/v1/chat/completions".encode()
        assert proxy.state["lines"] == [b"POST " + target + b" HTTP/1.1"]
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert await _ask(OpenAIEndpoint(server.base_url, "m")) == "via proxy"
        assert len(proxy.state["lines"]) == 1  # NO_PROXY: straight to the server
        monkeypatch.delenv("NO_PROXY")
        assert await _ask(OpenAIEndpoint(server.base_url, "m", trust_env=False)) == "via proxy"
        assert len(proxy.state["lines"]) == 1  # trust_env=False: the environment is ignored
    assert server.posts == 3


async def test_https_through_a_connect_proxy(
    proxy: ThreadServer, ca: trustme.CA, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    with _https_server(ca) as server:
        answer = await _ask(OpenAIEndpoint(_https_url(server), "m", verify=ca_file))
    assert answer == "over tls"
    assert proxy.state["lines"] == [b"CONNECT 127.0.0.1:%d HTTP/1.1" % server.port]
