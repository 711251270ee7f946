"""FusionSpec: one declaration of the fusion settings, the same Fusion from every surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfuse import (
    Fusion,
    FusionOptions,
    FusionSpec,
    InvalidRequestError,
    OpenAIEndpoint,
    PoolMember,
)
from polyfuse.aggregators import Aggregator
from polyfuse.cli._plan import AskOptions, plan_ask
from polyfuse.presets import PresetSpec, load_config
from polyfuse.registry import PresetRegistry

URL = "http://127.0.0.1:9/v1"
FUSOR_URL = "http://127.0.0.1:10/v1"


def _where(backend: Any) -> tuple[str, str]:
    return (getattr(backend, "base_url", backend.name), backend.model)


def _aggregator_shape(aggregator: Aggregator) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": type(aggregator).__name__}
    for attr in ("layers", "extractor_name"):
        if hasattr(aggregator, attr):
            shape[attr] = getattr(aggregator, attr)
    params = getattr(aggregator, "params", None)
    if params is not None:
        shape["params"] = params.model_dump(exclude_unset=True)
    for attr in ("fusor", "selector", "aggregator"):
        backend = getattr(aggregator, attr, None)
        if backend is not None:
            shape["model"] = _where(backend)
    judge = getattr(getattr(aggregator, "scorer", None), "judge", None)
    if judge is not None:
        shape["model"] = _where(judge)
        shape["params"] = getattr(aggregator.scorer, "params", None)  # type: ignore[attr-defined]
    return shape


def shape(fusion: Fusion) -> dict[str, Any]:
    """What makes two fusions the same: models, samples, aggregator and policy."""
    return {
        "members": [(*_where(m.backend), m.samples) for m in fusion.pool.members],
        "aggregator": _aggregator_shape(fusion.aggregator),
        "policy": fusion.policy.model_dump(),
    }


SETTINGS: list[dict[str, Any]] = [
    {"n": 4, "strategy": "fuse", "quorum": 3, "deadline": 12.5},
    {"n": 2, "strategy": "moa", "moa_layers": 3, "fusor_params": {"temperature": 0.0}},
    {"n": 5, "strategy": "vote", "vote_extract": "boxed", "min_candidates": 2},
    {"n": 3, "strategy": "best-of-n", "judge_params": {"max_tokens": 64}},
    {"n": 3, "strategy": "usc", "stream_candidates": True},
]


def _toml(settings: dict[str, Any], tmp_path: Path) -> Path:
    lines = [
        "[endpoints.qwen]",
        f'base_url = "{URL}"',
        'model = "qwen"',
        "[endpoints.big]",
        f'base_url = "{FUSOR_URL}"',
        'model = "big"',
        "[presets.p]",
        'pool = ["qwen"]',
        'fusor = "big"',
    ]
    for key, value in settings.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {v}" for k, v in value.items())  # pyright: ignore[reportUnknownVariableType]
            lines.append(f"{key} = {{ {inner} }}")
        elif isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    path = tmp_path / "presets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s["strategy"])
def test_toml_spec_chatfusion_and_cli_build_the_same_fusion(
    settings: dict[str, Any], tmp_path: Path
) -> None:
    from langchain_polyfuse import ChatFusion

    # TOML → PresetSpec → FusionSpec → Fusion
    path = _toml(settings, tmp_path)
    registry = PresetRegistry.from_file(path)
    from_toml = registry.fusion("p")

    # FusionSpec directly
    spec = FusionSpec(
        **settings,
        pool=[OpenAIEndpoint(URL, "qwen")],
        fusor=OpenAIEndpoint(FUSOR_URL, "big"),
    )
    assert shape(spec.build()) == shape(from_toml)
    assert registry.spec("p").fusion_options() == spec.fusion_options()

    # ChatFusion's fields (the same names)
    chat = ChatFusion(
        base_url=URL, model="qwen", fusor={"base_url": FUSOR_URL, "model": "big"}, **settings
    )
    assert shape(chat.spec.build()) == shape(from_toml)

    # polyfuse ask options (flags that exist on the CLI), over the same presets file
    cli_keys = {"n", "strategy", "quorum", "deadline"}
    plan = plan_ask(AskOptions(config=path, **{k: v for k, v in settings.items() if k in cli_keys}))
    assert shape(PresetRegistry(plan.config).fusion(plan.preset)) == shape(from_toml)


def test_cli_flags_give_the_spec_of_their_preset() -> None:
    plan = plan_ask(
        AskOptions(
            endpoints=[URL],
            models=["qwen"],
            n=4,
            strategy="fuse",
            quorum=3,
            deadline=12.5,
            temperature=0.5,
        )
    )
    spec = FusionSpec(n=4, quorum=3, deadline=12.5, pool=[OpenAIEndpoint(URL, "qwen")])
    assert shape(PresetRegistry(plan.config).fusion(plan.preset)) == shape(spec.build())
    assert plan.params == {"temperature": 0.5}


def test_spec_round_trips_through_a_preset_mapping() -> None:
    preset = PresetSpec(pool=["qwen"], n=2, strategy="vote", vote_extract="exact", quorum=2)
    config = load_config(
        {
            "endpoints": {"qwen": {"base_url": URL, "model": "qwen"}},
            "presets": {"p": preset.model_dump()},
        }
    )
    assert config.presets["p"] == preset
    spec = PresetRegistry(config).spec("p")
    assert spec.fusion_options() == preset.fusion_options()


def test_a_new_option_reaches_every_surface() -> None:
    """The extension point: a field of FusionOptions is a field of presets and ChatFusion."""
    from langchain_polyfuse import ChatFusion

    for model in (PresetSpec, FusionSpec, ChatFusion):
        assert set(FusionOptions.model_fields) <= set(model.model_fields)


def test_pool_members_keep_their_samples_and_bare_backends_get_n() -> None:
    a, b = OpenAIEndpoint(URL, "a"), OpenAIEndpoint(URL, "b")
    fusion = FusionSpec(pool=[PoolMember(a, samples=4), b], n=2).build()
    assert [m.samples for m in fusion.pool.members] == [4, 2]
    assert FusionSpec(pool=[a]).build().pool.size == 3  # one model: 3 samples by default
    assert FusionSpec(pool=[a, b]).build().pool.size == 2  # a panel: 1 each


def test_spec_params_are_defaults_under_the_call_params() -> None:
    fusion = FusionSpec(pool=[OpenAIEndpoint(URL, "a")], params={"temperature": 0.3}).build()
    assert fusion.params.temperature == 0.3
    request = fusion._request("hi", {"max_tokens": 5})  # pyright: ignore[reportPrivateUsage]
    assert request.params.temperature == 0.3 and request.params.max_tokens == 5
    request = fusion._request("hi", {"temperature": 1.0})  # pyright: ignore[reportPrivateUsage]
    assert request.params.temperature == 1.0


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"quorom": 2}, "unknown setting 'quorom' (did you mean 'quorum'?)"),
        ({"n_candidates": 7}, "unknown setting 'n_candidates' (did you mean 'n'?)"),
        ({"strategy": "bestofn"}, "unknown strategy 'bestofn'; use one of fuse, best-of-n"),
        ({"strategy": "bestofn"}, "(did you mean 'best-of-n'?)"),
        ({"vote_extract": "boxd"}, "(did you mean 'boxed'?)"),
        ({"n": 0}, "n: Input should be greater than or equal to 1"),
        ({"quorum": 9, "n": 2}, "quorum 9 exceeds the 2 candidates"),
        ({"quorum": 1, "min_candidates": 2}, "quorum=1 is below min_candidates=2"),
    ],
)
def test_bad_settings_name_the_fix(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        FusionSpec(pool=[OpenAIEndpoint(URL, "a")], **settings).build()
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"n_candidates": 7}, "did you mean 'n'?"),
        ({"quorom": 2}, "did you mean 'quorum'?"),
        ({"temprature": 0.1}, "did you mean 'temperature'?"),
        ({"strategy": "bestofn"}, "did you mean 'best-of-n'?"),
        ({"fusor_parms": {}}, "did you mean 'fusor_params'?"),
    ],
)
def test_chatfusion_typos_raise_invalid_request(settings: dict[str, Any], fragment: str) -> None:
    from langchain_polyfuse import ChatFusion

    with pytest.raises(InvalidRequestError, match="invalid ChatFusion settings") as caught:
        ChatFusion(base_url=URL, model="m", **settings)
    assert fragment in str(caught.value)


def test_presets_file_typos_name_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[endpoints.a]\nbase_url = "{URL}"\nmodel = "a"\n'
        '[presets.p]\npool = ["a"]\nstrategy = "best_of_n"\nquorom = 2\n'
    )
    with pytest.raises(InvalidRequestError) as caught:
        load_config(path)
    assert "unknown setting 'quorom' (did you mean 'quorum'?)" in str(caught.value)


def test_cli_flag_errors_name_the_flag() -> None:
    with pytest.raises(InvalidRequestError, match="--deadline must be > 0"):
        plan_ask(AskOptions(deadline=0))
    with pytest.raises(InvalidRequestError, match="--max-tokens must be at least 1"):
        plan_ask(AskOptions(max_tokens=0))
    with pytest.raises(InvalidRequestError, match="did you mean 'usc'"):
        plan_ask(AskOptions(strategy="uscc"))


def test_presets_public_names_stay_importable() -> None:
    from polyfuse import presets

    for name in presets.__all__:
        assert getattr(presets, name) is not None
    assert presets.PresetRegistry is PresetRegistry
    assert presets.build_aggregator.__module__ == "polyfuse.aggregators.strategies"


def test_llamaindex_classes_take_the_same_options() -> None:
    from llama_index.llms.polyfuse import FusionLLM
    from llama_index.response_synthesizers.polyfuse import FusionSynthesizer
    from polyfuse import MajorityVote
    from polyfuse.testing import FunctionBackend

    backend = FunctionBackend(lambda request: "42")
    llm = FusionLLM.from_models([backend], strategy="vote", n=5, quorum=4, timeout=30)
    assert isinstance(llm.fusion.aggregator, MajorityVote)
    assert llm.fusion.pool.size == 5 and llm.fusion.policy.quorum == 4 and llm.timeout == 30
    spec = FusionSpec(pool=[backend], n=2, deadline=3.0)
    assert shape(FusionLLM(spec).fusion)["policy"] == shape(spec.build())["policy"]

    options = FusionOptions(n=4, quorum=3, params={"temperature": 0.7}, fusor_params={"seed": 1})
    synth = FusionSynthesizer(backend, options=options)
    assert synth._num_drafts == 4 and synth._policy.quorum == 3  # pyright: ignore[reportPrivateUsage]
    assert synth._draft_params.temperature == 0.7  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(InvalidRequestError, match="fuses its drafts"):
        FusionSynthesizer(backend, options=FusionOptions(strategy="vote"))
    with pytest.raises(InvalidRequestError, match="did you mean 'quorum'"):
        FusionLLM.from_models([backend], quorom=2)
