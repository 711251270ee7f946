"""``probe_endpoint`` and ``polyfuse probe`` against the fake server's quirky modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cli_helpers import assert_one_line_error, run_cli

from polyfuse import OpenAIEndpoint
from polyfuse.errors import APIConnectionError, AuthenticationError
from polyfuse.probe import ProbeReport, probe_endpoint
from polyfuse.testing import FakeOpenAIServer


@pytest.mark.parametrize(
    ("n_mode", "usage", "expected_n", "supports_n"),
    [
        ("honour", True, "honoured", True),
        ("honour", False, "honoured", True),
        ("ignore", True, "ignored", False),
        ("reject", True, "rejected", False),
        ("reject", False, "rejected", False),
    ],
)
async def test_probe_modes(
    make_fake: Callable[..., FakeOpenAIServer],
    fake_url: str,
    n_mode: str,
    usage: bool,
    expected_n: str,
    supports_n: bool,
) -> None:
    make_fake(n_mode=n_mode, usage=usage)
    report = await probe_endpoint(OpenAIEndpoint(fake_url, "fake-model"))
    assert report.n == expected_n
    assert report.supports_n is supports_n
    assert report.usage is usage
    assert report.stream_usage is usage
    assert report.streaming and report.stream_done
    assert report.tool_calls == "supported"
    assert report.served_model == "fake-model"
    if n_mode == "honour":
        assert report.n_usage == ("all-choices" if usage else "unknown")
    if n_mode == "reject":
        assert "Only one completion choice" in report.n_detail
    if not usage:
        assert any("no usage" in note for note in report.notes)


async def test_probe_detects_under_counted_usage(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    """A server that honours n but reports the usage of one choice (llama.cpp's quirk)."""
    fake = make_fake()
    original = fake._prompt_tokens

    def one_choice(body, choices):  # type: ignore[no-untyped-def]
        for extra in choices[1:]:
            extra.tokens = 0
        return original(body, choices)

    fake._prompt_tokens = one_choice  # type: ignore[method-assign]
    report = await probe_endpoint(OpenAIEndpoint(fake_url, "fake-model"))
    assert (report.n, report.n_usage, report.supports_n) == ("honoured", "under-counted", False)


async def test_probe_raises_typed_errors(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(api_key="right")
    with pytest.raises(AuthenticationError):
        await probe_endpoint(OpenAIEndpoint(fake_url, "fake-model", api_key="wrong"))
    report = await probe_endpoint(OpenAIEndpoint(fake_url, "fake-model", api_key="right"))
    assert report.n == "honoured"
    with pytest.raises(APIConnectionError):
        await probe_endpoint(OpenAIEndpoint("http://127.0.0.1:9/v1", "m"))


def test_cli_probe_json(make_fake: Callable[..., FakeOpenAIServer], fake_url: str) -> None:
    make_fake(n_mode="ignore", usage=False)
    run = run_cli("probe", fake_url, "--model", "fake-model", "--json")
    assert run.code == 0, run.stderr
    report = ProbeReport.model_validate_json(run.stdout)
    assert (report.n, report.usage, report.supports_n) == ("ignored", False, False)


def test_cli_probe_table(fake: FakeOpenAIServer, fake_url: str) -> None:
    run = run_cli("probe", fake_url, "-m", "fake-model")
    assert run.code == 0, run.stderr
    assert "honoured (3 choices for n=3); usage: all-choices" in run.stdout
    assert "use supports_n" in run.stdout and "True" in run.stdout
    assert "[DONE]" in run.stdout


def test_cli_probe_unreachable() -> None:
    run = run_cli("probe", "http://127.0.0.1:9/v1", "-m", "m")
    assert_one_line_error(run, 1, "cannot reach http://127.0.0.1:9/v1/chat/completions")
