"""SHA-256 of files, remembered so that a verified model is not hashed on every start.

Within a process, a digest is remembered per (path, size, mtime). Across processes, a *stamp*
file next to the model records the digest with the size and mtime it was computed for: hashing
a 1.1 GB model took 10 s on the loaded 2-core development machine, too much for every
``polyfuse ask``. A file whose size or mtime changed is hashed again; a corruption that keeps
both (bit rot) is not caught until the stamp is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import cast

__all__ = ["CHUNK", "file_matches", "remember", "sha256_file"]

CHUNK = 1 << 20
"""Bytes read (and written) at a time when hashing or copying model data."""

# Digests of files already hashed in this process, keyed by (path, size, mtime_ns): hashing a
# 1.1 GB model takes seconds, worth doing once per process but not on every start.
_digests: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """The SHA-256 (hex) of a file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def file_matches(path: Path, sha256: str, *, stamp: Path | None = None) -> tuple[bool, str]:
    """Whether ``path`` hashes to ``sha256``, and its actual digest.

    The file is hashed once per version in a process and, when ``stamp`` is given, once per
    version at all (a matching digest is written to ``stamp``).
    """
    key = _key(path)
    with _lock:
        known = _digests.get(key)
    if known is None and stamp is not None:
        known = _read_stamp(stamp, key)
    if known is None:
        known = sha256_file(path)
        if stamp is not None and known == sha256:
            _write_stamp(stamp, key, known)
    with _lock:
        _digests[key] = known
    return known == sha256, known


def remember(path: Path, sha256: str, *, stamp: Path | None = None) -> None:
    """Record a digest computed while the file was written, so no re-hash is needed."""
    key = _key(path)
    with _lock:
        _digests[key] = sha256
    if stamp is not None:
        _write_stamp(stamp, key, sha256)


def _read_stamp(stamp: Path, key: tuple[str, int, int]) -> str | None:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None  # no stamp, or a damaged one: the file is hashed instead
    if not isinstance(recorded, dict):
        return None
    fields = cast("dict[str, object]", recorded)
    if (fields.get("size"), fields.get("mtime_ns")) != (key[1], key[2]):
        return None
    digest = fields.get("sha256")
    return digest if isinstance(digest, str) else None


def _write_stamp(stamp: Path, key: tuple[str, int, int], sha256: str) -> None:
    record = {"size": key[1], "mtime_ns": key[2], "sha256": sha256}
    partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    # the stamp only saves time: a read-only or full cache folder just means hashing next time
    with contextlib.suppress(OSError):
        partial.write_text(json.dumps(record))
        os.replace(partial, stamp)
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)
