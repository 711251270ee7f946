"""Citations: ``[n]`` markers in an answer, mapped back to the response's source nodes."""

from __future__ import annotations

import re
from collections.abc import Sequence

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.schema import NodeWithScore
from pydantic import BaseModel

__all__ = ["cited_nodes", "cited_numbers"]

_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """The source numbers cited in ``text`` as ``[n]``, ``[n][m]`` or ``[n, m]``, ascending."""
    found: set[int] = set()
    for match in _CITATION.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            found.add(int(part))
    return sorted(found)


def cited_nodes(response: RESPONSE_TYPE, text: str | None = None) -> list[NodeWithScore]:
    """The source nodes an answer cites: ``[n]`` is ``response.source_nodes[n - 1]``.

    ``text`` defaults to the response's text (for a streaming response, read the stream
    first). Numbers outside the sources are ignored; they are listed in
    ``response.metadata["polyfuse"]["citations"]["invalid"]``.
    """
    if text is None:
        answer = getattr(response, "response", None)
        if answer is None:
            answer = getattr(response, "response_txt", None)
        text = answer.model_dump_json() if isinstance(answer, BaseModel) else str(answer or "")
    nodes: Sequence[NodeWithScore] = response.source_nodes
    return [nodes[n - 1] for n in cited_numbers(text) if 1 <= n <= len(nodes)]
