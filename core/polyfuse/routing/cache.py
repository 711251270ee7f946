"""An on-disk embedding cache, keyed by the text's SHA-256 and the embedder's id.

SQLite (standard library) holds the vectors as float32 blobs: one file, safe against a crash
mid-write, and a lookup of thousands of keys takes milliseconds. Embedding a training log a
second time (another router, another scenario) then costs nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InvalidRequestError
from .embedders import Embedder, Matrix

__all__ = ["EmbeddingCache", "default_cache_path", "embed_texts", "text_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    embedder TEXT NOT NULL,
    key TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (embedder, key)
)
"""


def text_key(text: str) -> str:
    """The cache key of a text: its SHA-256, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    """``~/.cache/polyfuse/embeddings.sqlite``."""
    return Path.home() / ".cache" / "polyfuse" / "embeddings.sqlite"


class EmbeddingCache:
    """Stored embeddings: ``get``/``put`` by (embedder id, text)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InvalidRequestError(
                f"cannot use {self.path} as the embedding cache ({exc}); pass another path"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    def get(self, embedder_id: str, texts: list[str]) -> list[Matrix | None]:
        """The stored vector of each text (None where there is none)."""
        keys = [text_key(t) for t in texts]
        found: dict[str, Matrix] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, vector FROM embeddings WHERE embedder = ? AND key IN ({marks})",
                    [embedder_id, *chunk],
                )
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)[None, :]
        return [found.get(k) for k in keys]

    def put(self, embedder_id: str, texts: list[str], vectors: Matrix) -> None:
        """Store one vector per text."""
        rows = [
            (embedder_id, text_key(t), np.asarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"


async def embed_texts(
    embedder: Embedder,
    texts: list[str],
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 512,
    on_progress: Callable[[int], None] | None = None,
) -> Matrix:
    """Embed ``texts`` through ``cache`` (only the misses reach the embedder).

    ``on_progress`` is called with the number of texts done after each batch (hits first).
    """
    if not texts:
        raise InvalidRequestError("nothing to embed: the list of texts is empty")
    stored: list[Matrix | None] = (
        cache.get(embedder.id, texts) if cache is not None else [None] * len(texts)
    )
    missing = [i for i, v in enumerate(stored) if v is None]
    if on_progress is not None and len(texts) > len(missing):
        on_progress(len(texts) - len(missing))
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        vectors = await embedder.aembed([texts[i] for i in chunk])
        if vectors.shape[0] != len(chunk):
            raise InvalidRequestError(
                f"embedder {embedder.id} returned {vectors.shape[0]} vectors for {len(chunk)} texts"
            )
        if cache is not None:
            cache.put(embedder.id, [texts[i] for i in chunk], vectors)
        for row, i in enumerate(chunk):
            stored[i] = vectors[row : row + 1]
        if on_progress is not None:
            on_progress(len(chunk))
    rows = [v for v in stored if v is not None]
    if len({r.shape[1] for r in rows}) > 1:
        raise InvalidRequestError(
            f"the cache holds vectors of different sizes for {embedder.id}; delete "
            "the cache file or use a new one"
        )
    return np.concatenate(rows, axis=0).astype(np.float32)
