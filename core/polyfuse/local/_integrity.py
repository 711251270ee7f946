"""SHA-256 of files, remembered per process so that a verified model is hashed only once."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

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


def file_matches(path: Path, sha256: str) -> tuple[bool, str]:
    """Whether ``path`` hashes to ``sha256``, and its actual digest (hashed once per version)."""
    key = _key(path)
    with _lock:
        known = _digests.get(key)
    if known is None:
        known = sha256_file(path)
        with _lock:
            _digests[key] = known
    return known == sha256, known


def remember(path: Path, sha256: str) -> None:
    """Record a digest computed while the file was written, so no re-hash is needed."""
    key = _key(path)
    with _lock:
        _digests[key] = sha256
