"""What ``polyfuse distill`` tells a user at the end of a run, and its exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from distill_helpers import TEACHERS, panel_spec, read_jsonl, write_prompts
from typer.testing import CliRunner

from polyfuse.cli.distill import EXIT_ROWS_FAILED, register
from polyfuse.distill import InputSpec, distill
from polyfuse.testing import FakeOpenAIServer, Fault


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """polyfuse"""

    register(app)
    return app


def _flat(text: str) -> str:
    return " ".join(text.split())


def _flags(url: str) -> list[str]:
    teachers = [f for name in TEACHERS for f in ("--teacher", f"{name}@{url}")]
    return [*teachers, "--fusor", f"fusor@{url}", "--no-progress"]


def test_a_rerun_with_rows_failed_before_exits_3_until_they_are_retried(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a"}])
    out = tmp_path / "out.jsonl"
    args = ["distill", str(source), "-o", str(out), *_flags(fake_url)]
    # Every teacher refuses (400: not retried), so the only row fails.
    panel_fake.inject(Fault("status", status=400, times=3))
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == EXIT_ROWS_FAILED, first.output
    again = CliRunner().invoke(cli, args)  # nothing new to do, but the output is incomplete
    assert again.exit_code == EXIT_ROWS_FAILED, again.output
    assert "skipped, failed before" in again.output
    assert " ".join(again.output.split()).count("records written 0 →") == 1
    retried = CliRunner().invoke(cli, [*args, "--retry-errors"])
    assert retried.exit_code == 0, retried.output
    assert len(read_jsonl(out)) == 1


def test_no_progress_lists_the_bad_input_lines_with_their_reasons(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    rows = [{"prompt": "ok"}, "{oops", {"question": "?"}, {"prompt": ""}]
    source = write_prompts(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["distill", str(source), "-o", str(out), *_flags(fake_url)])
    assert result.exit_code == 0, result.output
    assert "bad input lines 3 (listed below)" in " ".join(result.output.split())
    assert "bad input line 2: not valid JSON" in result.output
    assert "bad input line 3: no field 'messages' or 'prompt'" in result.output
    assert "bad input line 4:" in result.output


def test_cost_is_unknown_without_prices_not_zero(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a"}])
    args = ["distill", str(source), *_flags(fake_url)]
    unpriced = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a.jsonl")])
    assert "cost unknown (no prices" in _flat(unpriced.output)
    assert "$0.0000" not in unpriced.output
    priced = CliRunner().invoke(
        cli, [*args, "-o", str(tmp_path / "b.jsonl"), "--price", "alpha=1000/1000"]
    )
    assert "(priced teachers only)" in priced.output and "cost unknown" not in priced.output
    assert "$0.0000" not in priced.output  # alpha's tokens cost something at $1000/1M


def test_preset_has_the_same_short_flag_as_ask(
    tmp_path: Path, cli: typer.Typer, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    config = tmp_path / "presets.toml"
    config.write_text(
        "".join(
            f'[endpoints.{name}]\nbase_url = "{fake_url}"\nmodel = "{name}"\n'
            for name in (*TEACHERS, "fusor")
        )
        + '[presets.panel]\npool = ["alpha", "beta", "gamma"]\nfusor = "fusor"\n'
    )
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "Why?"}])
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        cli, ["distill", str(source), "-o", str(out), "-c", str(config), "-p", "panel"]
    )
    assert result.exit_code == 0, result.output
    assert read_jsonl(out)[0]["messages"][-1]["content"] == "Fused: Why?"


def test_input_spec_takes_a_str_path(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "prompts.jsonl", [{"prompt": "Why?"}])
    spec = InputSpec(str(source))
    assert spec.path == source and spec.resolved_format == "jsonl"
    summary = distill(spec, tmp_path / "out.jsonl", panel_spec(fake_url))
    assert summary.stats.written == 1


@pytest.mark.ray
def test_ray_address_auto_without_a_cluster_is_one_line(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a"}])
    # A private temp folder: Ray's "auto" must not find another test's cluster.
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray"), "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "polyfuse.cli", "distill", str(source)]
    cmd += ["-o", str(tmp_path / "o.jsonl"), *_flags(fake_url)]
    cmd += ["--engine", "ray", "--ray-address", "auto"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "ray start --head" in errors[0] and "drop --ray-address" in errors[0]


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        (["--aggregations", "fuse,bestofn"], "did you mean 'best-of-n'?"),
        (["--format", "preferences"], "did you mean 'preference'?"),
        (["--engine", "rey"], "did you mean 'ray'?"),
    ],
)
def test_a_mistyped_choice_names_the_nearest_valid_one(
    tmp_path: Path, cli: typer.Typer, fake_url: str, flags: list[str], hint: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a"}])
    args = ["distill", str(source), "-o", str(tmp_path / "o.jsonl"), *_flags(fake_url)]
    result = CliRunner().invoke(cli, [*args, *flags])
    assert result.exit_code == 2 and hint in _flat(result.output.replace("│", " ")), result.output


def test_input_spec_sets_every_field_it_declares(tmp_path: Path) -> None:
    import dataclasses

    values = {
        "format": "csv",
        "prompt_field": "q",
        "id_field": "id",
        "system": "Be brief.",
        "extra_fields": ("gold",),
    }
    declared = {f.name for f in dataclasses.fields(InputSpec)} - {"path"}
    assert declared == set(values)  # a new field must be added to the test and to __init__
    spec = InputSpec(str(tmp_path / "p.csv"), **values)  # type: ignore[arg-type]
    assert {name: getattr(spec, name) for name in declared} == values
    assert dataclasses.replace(spec, system=None).system is None
