"""``polyfuse ask`` against the fake OpenAI-compatible server, as a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run_cli

from polyfuse import FusionResult
from polyfuse.testing import FakeOpenAIServer, LatencyModel

QUESTION = "What is six times seven?"


def _result(stdout: str) -> FusionResult:
    return FusionResult.model_validate_json(stdout)


def test_json_is_the_full_fusion_result(fake: FakeOpenAIServer, fake_url: str) -> None:
    run = run_cli("ask", QUESTION, "-e", fake_url, "-m", "fake-model", "--json")
    assert run.code == 0, run.stderr
    result = _result(run.stdout)
    assert [c.status for c in result.candidates] == ["ok", "ok", "ok"]
    assert {c.backend for c in result.candidates} == {"fake-model"}
    assert result.aggregation.method == "fuse"
    assert result.content
    assert result.usage.total.total_tokens > 0
    candidates_call, fusor_call = fake.requests  # n=3 in one request (the fake honours n)
    assert candidates_call["n"] == 3
    assert candidates_call["messages"] == [{"role": "user", "content": QUESTION}]
    assert fusor_call["messages"][0]["role"] == "system"  # the fusor's instructions


@pytest.mark.parametrize(
    ("strategy", "method"),
    [("best-of-n", "best_of_n"), ("vote", "vote"), ("usc", "usc"), ("moa", "moa")],
)
def test_strategies(fake: FakeOpenAIServer, fake_url: str, strategy: str, method: str) -> None:
    run = run_cli("ask", QUESTION, "-e", fake_url, "-m", "fake-model", "-s", strategy, "--json")
    assert run.code == 0, run.stderr
    result = _result(run.stdout)
    assert result.aggregation.method == method
    assert len(result.candidates) == 3


def test_live_view_streams_the_answer_and_shows_candidates(
    fake: FakeOpenAIServer, fake_url: str
) -> None:
    run = run_cli("ask", QUESTION, "-e", fake_url, "-m", "fake-model", "--show-candidates")
    assert run.code == 0, run.stderr
    for index in range(3):
        assert f"candidate #{index}" in run.stdout
    answer = run.stdout.rstrip().splitlines()[-1]
    assert answer.startswith("Answer")  # the fake's reply to the fusor's request
    assert "3 candidates" in run.stderr  # the live table's final state
    assert "fuse · 3/3 candidates" in run.stderr  # the summary line


@pytest.mark.parametrize("argument", [[], ["-"]])
def test_question_from_stdin(fake: FakeOpenAIServer, fake_url: str, argument: list[str]) -> None:
    run = run_cli(
        "ask", *argument, "-e", fake_url, "-m", "fake-model", "--json", stdin=" From stdin? \n"
    )
    assert run.code == 0, run.stderr
    assert fake.requests[0]["messages"][-1]["content"] == "From stdin?"


def test_sampling_options_reach_the_server(fake: FakeOpenAIServer, fake_url: str) -> None:
    run = run_cli(
        "ask", QUESTION, "-e", fake_url, "-m", "fake-model", "-n", "2",
        "--temperature", "0.3", "--max-tokens", "7", "--seed", "11", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    first = fake.requests[0]
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.3, 7, 11)
    assert first.get("n") == 2  # one batched request: the fake honours n
    assert len(_result(run.stdout).candidates) == 2


def test_panel_with_a_fusor_model(fake: FakeOpenAIServer, fake_url: str) -> None:
    run = run_cli(
        "ask", QUESTION, "-e", fake_url, "-m", "alpha", "-e", fake_url, "-m", "beta",
        "--fusor", "judge-model", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    result = _result(run.stdout)
    assert [c.backend for c in result.candidates] == ["alpha", "beta"]  # n=1 each in a panel
    assert sorted(r["model"] for r in fake.requests) == ["alpha", "beta", "judge-model"]
    assert result.aggregation.calls[0].model == "judge-model"


def _presets(path: Path, url: str) -> Path:
    path.write_text(
        f"""
[endpoints.fake]
base_url = "{url}"
model = "fake-model"
supports_n = false

[presets.duo]
pool = ["fake"]
n = 2
strategy = "vote"

[presets.trio]
pool = ["fake"]
n = 3
""",
        encoding="utf-8",
    )
    return path


def test_preset_file(fake: FakeOpenAIServer, fake_url: str, tmp_path: Path) -> None:
    config = _presets(tmp_path / "presets.toml", fake_url)
    run = run_cli("ask", QUESTION, "--config", str(config), "--preset", "duo", "--json")
    assert run.code == 0, run.stderr
    result = _result(run.stdout)
    assert (result.aggregation.method, len(result.candidates)) == ("vote", 2)
    assert len(fake.requests) == 2  # supports_n = false: one request per candidate

    override = run_cli(
        "ask", QUESTION, "-c", str(config), "-p", "duo", "-s", "fuse", "-n", "3", "--json"
    )
    assert override.code == 0, override.stderr
    result = _result(override.stdout)
    assert (result.aggregation.method, len(result.candidates)) == ("fuse", 3)


def test_quorum_cancels_the_straggler(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str, tmp_path: Path
) -> None:
    make_fake(latency=LatencyModel(ttft_s=0.05, straggler_every=3, straggler_factor=200))
    config = _presets(tmp_path / "presets.toml", fake_url)
    run = run_cli("ask", QUESTION, "-c", str(config), "-p", "trio", "--quorum", "2", "--json")
    assert run.code == 0, run.stderr
    statuses = sorted(c.status for c in _result(run.stdout).candidates)
    assert statuses == ["cancelled", "ok", "ok"]


def test_api_key_from_the_environment(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    make_fake(api_key="s3cret-key")
    args = ("ask", QUESTION, "-e", fake_url, "-m", "fake-model", "--json")
    ok = run_cli(*args, env={"POLYFUSE_API_KEY": "s3cret-key"})
    assert ok.code == 0, ok.stderr
    refused = run_cli(*args)
    assert refused.code == 1
    assert "401" in refused.stderr
    assert "s3cret-key" not in ok.stdout + ok.stderr + refused.stdout + refused.stderr
