"""Crash-safe, append-only JSONL files and what a restart learns from them.

Every record is one line. Lines are appended with ``O_APPEND`` in one ``write`` per batch and
then ``fsync``-ed, so after a crash — SIGKILL included — the file holds whole records plus, at
worst, one torn last line. :func:`scan_jsonl` cuts that torn tail off on restart and returns the
input hashes already present, so a rerun skips them and never writes a record twice.
:class:`JsonlRecords` is the one reader of such files (distill outputs, eval generations and
judgments): it passes over a torn last line and refuses any other line that is not a record.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from ..errors import InvalidRequestError
from .errors import DistillOutputError

__all__ = [
    "JsonlAppender",
    "JsonlRecords",
    "ScanResult",
    "check_writable",
    "read_jsonl",
    "scan_jsonl",
]


def check_writable(path: Path, *, what: str, not_same_as: Sequence[Path] = ()) -> None:
    """Raise :class:`DistillOutputError` unless ``path`` can be created or appended to."""
    for other in not_same_as:
        if path.resolve() == other.resolve():
            raise DistillOutputError(
                f"the {what} {str(path)!r} is the same file as {str(other)!r}; "
                "write to another path"
            )
    if path.is_dir():
        raise DistillOutputError(f"the {what} {str(path)!r} is a directory; name a file in it")
    parent = path.parent
    if not parent.exists():
        raise DistillOutputError(
            f"cannot write the {what} {str(path)!r}: directory {str(parent)!r} does not exist; "
            "create it first"
        )
    if not parent.is_dir():
        raise DistillOutputError(
            f"cannot write the {what} {str(path)!r}: {str(parent)!r} is not a directory"
        )


@dataclass
class ScanResult:
    """What an existing JSONL file already holds.

    Attributes:
        hashes: input hash → number of lines with it.
        configs: the config fingerprints found.
        lines: complete lines read.
        torn_bytes: bytes of a torn last line that were cut off (0 when none).
    """

    hashes: dict[str, int] = field(default_factory=dict)
    configs: set[str] = field(default_factory=set)
    lines: int = 0
    torn_bytes: int = 0


def _hash_of(entry: object) -> tuple[str | None, str | None]:
    if not isinstance(entry, dict):
        return None, None
    provenance = entry.get("provenance")
    holder = provenance if isinstance(provenance, dict) else entry
    digest = holder.get("input_hash")
    config = holder.get("config")
    return (
        digest if isinstance(digest, str) else None,
        config if isinstance(config, str) else None,
    )


class JsonlRecords:
    """The records of a JSONL file written by :class:`JsonlAppender`, read line by line.

    Blank lines are passed over. A last line without its newline is a write cut short by a
    crash: it is not a record, and its length is kept in :attr:`torn_bytes` (:attr:`whole_bytes`
    is where the whole lines end, to truncate to). Any other line that is not a JSON object
    ``accept`` takes raises ``error`` naming the file, the line number and ``kind``.

    Args:
        handle: the file, opened in binary mode at its start.
        path: the file's path, for messages.
        kind: what a line should be, e.g. ``"polyfuse distill record (no input_hash)"``.
        accept: whether a decoded JSON object is such a record.
        error: the error type raised for a line that is not one.
    """

    def __init__(
        self,
        handle: BinaryIO,
        path: Path,
        *,
        kind: str,
        accept: Callable[[dict[str, Any]], bool],
        error: type[InvalidRequestError] = DistillOutputError,
    ) -> None:
        self.handle = handle
        self.path = path
        self.kind = kind
        self.accept = accept
        self.error = error
        self.whole_bytes = 0
        self.torn_bytes = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, raw in enumerate(self.handle, start=1):
            if not raw.endswith(b"\n"):
                self.torn_bytes = len(raw)
                return
            self.whole_bytes += len(raw)
            if not raw.strip():
                continue
            try:
                entry: Any = json.loads(raw)
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or not self.accept(entry):
                raise self.error(
                    f"{str(self.path)!r} line {number} is not a {self.kind}; polyfuse only "
                    "appends to files it wrote — remove that line or write to a new file"
                )
            yield entry


def read_jsonl(
    path: Path,
    *,
    kind: str,
    accept: Callable[[dict[str, Any]], bool],
    error: type[InvalidRequestError] = DistillOutputError,
) -> list[dict[str, Any]]:
    """Every record of ``path`` (none when it does not exist), as :class:`JsonlRecords` reads
    them: a torn last line is left out, any other line that is not a record raises ``error``."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise error(f"cannot open {str(path)!r}: {exc.strerror}") from None
    with handle:
        return list(JsonlRecords(handle, path, kind=kind, accept=accept, error=error))


def scan_jsonl(path: Path, *, repair: bool) -> ScanResult:
    """Read the input hashes of an output or errors file written by :class:`JsonlAppender`.

    A last line without its newline is a write cut short by a crash: with ``repair`` it is
    truncated away (and the truncation fsync-ed), else it is only counted. Any other line that is
    not a record raises :class:`DistillOutputError` naming its line number.
    """
    result = ScanResult()
    if not path.exists():
        return result
    try:
        handle = path.open("r+b" if repair else "rb")
    except OSError as exc:
        raise DistillOutputError(f"cannot open {str(path)!r}: {exc.strerror}") from None
    with handle:
        records = JsonlRecords(
            handle,
            path,
            kind="polyfuse distill record (no input_hash)",
            accept=lambda entry: _hash_of(entry)[0] is not None,
        )
        for entry in records:
            digest, config = _hash_of(entry)
            if digest is not None:
                result.hashes[digest] = result.hashes.get(digest, 0) + 1
            if config is not None:
                result.configs.add(config)
            result.lines += 1
        result.torn_bytes = records.torn_bytes
        if result.torn_bytes and repair:
            handle.truncate(records.whole_bytes)
            handle.flush()
            os.fsync(handle.fileno())
    return result


class JsonlAppender:
    """An append-only JSONL file, opened for one run and locked against a second writer.

    :meth:`append` writes a batch of lines with ``O_APPEND`` in one ``write`` (retrying the
    rest if the kernel wrote only part), then ``fsync``-s, so a line is either whole or — if the
    process dies mid-write — a torn tail that :func:`scan_jsonl` removes on the next start.

    Args:
        path: the file (created when missing).
        fsync: ``fsync`` after each batch (survives power loss, not just process death).
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None

    def open(self) -> JsonlAppender:
        """Open (creating if needed) and take an exclusive lock; raise if another run has it."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise DistillOutputError(
                f"cannot write {str(self.path)!r}: {exc.strerror}; pick a writable path"
            ) from None
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise DistillOutputError(
                    f"another process is writing {str(self.path)!r} (it is locked); wait for it "
                    "to finish or write to another file"
                ) from None
        self._fd = fd
        return self

    def append(self, lines: Sequence[str]) -> None:
        """Append whole lines (each without its newline) durably."""
        if not lines:
            return
        if self._fd is None:
            raise DistillOutputError(f"{str(self.path)!r} is not open; call open() first")
        data = memoryview("".join(f"{line}\n" for line in lines).encode("utf-8"))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Release the lock and close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlAppender:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
