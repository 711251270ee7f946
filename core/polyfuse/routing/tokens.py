"""Token counts for cost estimates when a log records none.

Counted with the Llama-2 SentencePiece tokenizer (32,000 pieces) that ships inside the
``wordllama`` wheel, so counting works offline; any model's own tokenizer differs by a few
percent, which is why a cost computed from these counts is marked ``cost_estimated``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["count_tokens"]


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from .embedders import load_wordllama

    return load_wordllama("l2_supercat", 256).tokenizer  # same cache key as the embedder


def count_tokens(texts: list[str]) -> list[int]:
    """The number of tokens of each text (Llama-2 tokenizer from ``wordllama``)."""
    if not texts:
        return []
    encoded = _tokenizer().encode_batch(texts, add_special_tokens=False)
    return [len(item.ids) for item in encoded]
