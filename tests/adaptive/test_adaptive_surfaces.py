"""The settings reach every surface: presets files and LangChain's ChatFusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse import InvalidRequestError
from polyfuse.adaptive import AdaptiveSampling
from polyfuse.registry import PresetRegistry

_PRESETS = """
[endpoints.qwen]
base_url = "http://127.0.0.1:9/v1"
model = "qwen"

[presets.cheap]
pool = ["qwen"]
n = 8
strategy = "fuse"
answer_extract = "boxed"
consensus = "on"
adaptive = { first = 2, confidence = 0.9 }
"""


def test_a_presets_file_configures_adaptive_sampling(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    path.write_text(_PRESETS)
    fusion = PresetRegistry.from_file(path).fusion("cheap")
    assert fusion.adaptive == AdaptiveSampling(first=2, confidence=0.9)
    assert fusion.reader.criterion == "beta"
    assert fusion.consensus == "on"


def test_a_misspelt_adaptive_setting_is_named(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    path.write_text(_PRESETS.replace("first = 2", "frist = 2"))
    with pytest.raises(InvalidRequestError, match="frist"):
        PresetRegistry.from_file(path).fusion("cheap")


def test_chat_fusion_takes_the_same_fields() -> None:
    langchain_polyfuse = pytest.importorskip("langchain_polyfuse")
    chat = langchain_polyfuse.ChatFusion(
        base_url="http://127.0.0.1:9/v1",
        model="qwen",
        n=5,
        strategy="vote",
        adaptive={"first": 2},
        consensus="off",
    )
    fusion = chat.spec.build()
    assert fusion.adaptive == AdaptiveSampling(first=2)
    assert fusion.consensus == "off"
