"""The embedded model through the CLI: ``polyfuse ask`` and ``polyfuse probe local``."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

from polyfuse import FusionResult
from polyfuse.probe import ProbeReport

pytestmark = pytest.mark.local_model


def test_ask_offline_with_the_embedded_model() -> None:
    run = run_cli("ask", "Name one primary color.", "-n", "2", "--max-tokens", "16", "--json")
    assert run.code == 0, run.stderr
    result = FusionResult.model_validate_json(run.stdout)
    assert [c.status for c in result.candidates] == ["ok", "ok"]
    assert {c.backend for c in result.candidates} == {"local"}
    assert {c.model for c in result.candidates} == {"smollm2-135m-instruct"}
    assert all(0 < c.usage.completion_tokens <= 16 for c in result.candidates)
    assert result.content


def test_probe_local() -> None:
    run = run_cli("probe", "local", "--json")
    assert run.code == 0, run.stderr
    report = ProbeReport.model_validate_json(run.stdout)
    assert (report.n, report.supports_n) == ("honoured", False)
