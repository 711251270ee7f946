"""Command-line flags of adaptive sampling and hedging map onto the one fusion spec: they
build the same ``FusionOptions`` fields a presets file sets, merged onto a preset's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from polyfuse import FusionResult, FusionSpec, OpenAIEndpoint
from polyfuse.adaptive import AdaptiveSampling
from polyfuse.cli._fusion_flags import FusionFlags
from polyfuse.cli._plan import AskOptions, plan_ask
from polyfuse.errors import InvalidRequestError
from polyfuse.hedging import HedgedBackend, HedgeSettings
from polyfuse.presets import PresetRegistry, load_config, with_overrides
from polyfuse.testing import FakeOpenAIServer

URL = "http://127.0.0.1:9/v1"
FALLBACK = "http://127.0.0.1:10/v1"


def _presets(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / "presets.toml"
    path.write_text(
        f'[endpoints.a]\nbase_url = "{URL}"\nmodel = "qwen"\n'
        f'[endpoints.b]\nbase_url = "{FALLBACK}"\nmodel = "qwen"\n\n'
        f'[presets.p]\npool = ["a"]\nn = 8\nstrategy = "vote"\n{preset}\n',
        encoding="utf-8",
    )
    return path


def test_flags_build_the_presets_fields() -> None:
    flags = FusionFlags(adaptive_confidence=0.9, hedge_after=2.0, hedge_budget=0.5)
    assert flags.overrides() == {
        "adaptive": {"confidence": 0.9},
        "hedge": {"after": 2.0, "budget": 0.5},
    }
    assert FusionFlags(adaptive=True).overrides() == {"adaptive": {}}
    assert FusionFlags().overrides() == {}
    plan = plan_ask(
        AskOptions(
            endpoints=[URL],
            models=["qwen"],
            n=6,
            strategy="vote",
            fusion_flags=FusionFlags(
                adaptive_first=2, adaptive_max_rounds=3, hedge_after=1.5, consensus="off"
            ),
        )
    )
    preset = plan.config.presets[plan.preset]
    assert preset.adaptive == AdaptiveSampling(first=2, max_rounds=3)
    assert preset.hedge == HedgeSettings(after=1.5)
    assert preset.consensus == "off"
    # the same settings written in Python give the same fusion
    flagged = PresetRegistry(plan.config).fusion(plan.preset)
    direct = FusionSpec(
        pool=[OpenAIEndpoint(URL, "qwen")],
        n=6,
        strategy="vote",
        adaptive={"first": 2, "max_rounds": 3},
        hedge={"after": 1.5},
        consensus="off",
    ).build()
    assert flagged.adaptive == direct.adaptive and flagged.consensus == direct.consensus
    member = flagged.pool.members[0].backend
    assert isinstance(member, HedgedBackend) and member.after == 1.5


def test_flags_merge_onto_a_presets_settings(tmp_path: Path) -> None:
    path = _presets(tmp_path, "adaptive = { first = 2, confidence = 0.9 }\nhedge = { after = 3.0 }")
    plan = plan_ask(
        AskOptions(
            config=path,
            fusion_flags=FusionFlags(adaptive_confidence=0.95, hedge_budget=0.1),
        )
    )
    preset = plan.config.presets["p"]
    assert preset.adaptive == AdaptiveSampling(first=2, confidence=0.95)
    assert preset.hedge == HedgeSettings(after=3.0, budget=0.1)
    # --adaptive alone keeps the preset's thresholds
    kept = plan_ask(AskOptions(config=path, fusion_flags=FusionFlags(adaptive=True)))
    assert kept.config.presets["p"].adaptive == AdaptiveSampling(first=2, confidence=0.9)


def test_hedge_fallback_by_name_or_url(tmp_path: Path) -> None:
    path = _presets(tmp_path, "")
    plan = plan_ask(
        AskOptions(config=path, fusion_flags=FusionFlags(hedge_after=1.0, hedge_fallback="b"))
    )
    assert set(plan.config.endpoints) == {"a", "b"}  # the fallback endpoint is kept
    hedged = PresetRegistry(plan.config).fusion("p").pool.members[0].backend
    assert isinstance(hedged, HedgedBackend)
    assert getattr(hedged.fallback, "name", None) == "b"
    flags = FusionFlags(hedge_after=1.0, hedge_fallback=FALLBACK)
    plan = plan_ask(AskOptions(endpoints=[URL], models=["qwen"], fusion_flags=flags))
    fallback = plan.config.endpoints["hedge"]
    assert fallback.base_url == FALLBACK and fallback.model == "qwen"
    assert plan.config.presets[plan.preset].hedge == HedgeSettings(after=1.0, fallback="hedge")
    with pytest.raises(InvalidRequestError, match="embedded model"):
        plan_ask(AskOptions(fusion_flags=flags))  # the embedded model: no URL to hedge to
    # in Python the fallback is the backend itself
    backup = OpenAIEndpoint(FALLBACK, "qwen")
    spec = FusionSpec(pool=[OpenAIEndpoint(URL, "qwen")], hedge={"after": 1, "fallback": backup})
    member = spec.build().pool.members[0].backend
    assert isinstance(member, HedgedBackend) and member.fallback is backup


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fusion_flags": FusionFlags(hedge_budget=0.5)}, "hedge.after"),
        ({"fusion_flags": FusionFlags(adaptive_confidence=1.5)}, "adaptive.confidence"),
        ({"fusion_flags": FusionFlags(adaptive_max_rounds=0)}, "adaptive.max_rounds"),
        (
            {"fusion_flags": FusionFlags(hedge_after=1, hedge_fallback="nope")},
            "neither a URL nor an endpoint",
        ),
        ({"fusion_flags": FusionFlags(consensus="maybe")}, "--consensus"),
    ],
)
def test_bad_flags_are_clear_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace(".", r"\.")):
        plan_ask(AskOptions(endpoints=[URL], models=["qwen"], **options))


def test_a_fallback_name_needs_a_presets_file() -> None:
    with pytest.raises(InvalidRequestError, match="endpoint name"):
        FusionSpec(pool=[OpenAIEndpoint(URL, "qwen")], hedge={"after": 1, "fallback": "b"}).build()
    with pytest.raises(InvalidRequestError, match="'nope'"):
        load_config(
            {
                "endpoints": {"a": {"base_url": URL, "model": "qwen"}},
                "presets": {"p": {"pool": ["a"], "hedge": {"after": 1, "fallback": "nope"}}},
            }
        )


def test_ask_threshold_flags_on_the_fake_server(fake: FakeOpenAIServer, fake_url: str) -> None:
    fake.responder = lambda body, index: "It is 42."
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYFUSE_API")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    run = subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", "ask", "What is 6 * 7?", "-e", fake_url,
         "-m", "fake-model", "-n", "8", "-s", "vote", "--adaptive-first", "2",
         "--adaptive-confidence", "0.95", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = FusionResult.model_validate_json(run.stdout)
    assert result.sampling is not None
    assert result.sampling.rounds == [2, 1, 1]  # 4-0 is the first P(majority) >= 0.95
    assert result.usage.saved.calls == 4


def test_overrides_of_a_presets_file(tmp_path: Path) -> None:
    config = load_config(_presets(tmp_path, "adaptive = { first = 2 }"))
    tuned = with_overrides(config, "p", {"adaptive": {"max_rounds": 2}, "consensus": "off"})
    assert tuned.presets["p"].adaptive == AdaptiveSampling(first=2, max_rounds=2)
    assert tuned.presets["p"].consensus == "off" and config.presets["p"].consensus == "auto"
    assert with_overrides(config, "p", {}) is config
    with pytest.raises(InvalidRequestError, match="unknown preset 'q'"):
        with_overrides(config, "q", {"consensus": "off"})
    with pytest.raises(InvalidRequestError, match="'nope'"):
        with_overrides(config, "p", {"hedge": {"after": 1, "fallback": "nope"}})


def test_commands_get_the_flags_from_one_declaration() -> None:
    import typer
    from typer.testing import CliRunner

    from polyfuse.cli._fusion_flags import takes_fusion_flags

    seen: list[tuple[str, FusionFlags]] = []
    app = typer.Typer()

    @app.command()
    @takes_fusion_flags(without=("hedge_fallback",))
    def run(name: str, *, fusion_flags: FusionFlags) -> None:
        seen.append((name, fusion_flags))

    result = CliRunner().invoke(
        app, ["x", "--adaptive-confidence", "0.9", "--hedge-after", "2", "--consensus", "off"]
    )
    assert result.exit_code == 0, result.output
    assert seen == [("x", FusionFlags(adaptive_confidence=0.9, hedge_after=2.0, consensus="off"))]
    refused = CliRunner().invoke(app, ["x", "--hedge-fallback", "b"])
    assert refused.exit_code == 2 and "No such option" in refused.output
    with pytest.raises(ValueError, match="not fusion flags: hedge"):
        takes_fusion_flags(without=("hedge",))
    with pytest.raises(TypeError, match="must take fusion_flags"):
        takes_fusion_flags()(lambda name: None)
