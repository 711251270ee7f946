"""polyfuse as a LlamaIndex response synthesizer: RAG answers fused from several drafts.

- :class:`FusionSynthesizer`: drafts answers from the retrieved nodes (several samples, a
  panel of models, or different slices of the context) and fuses them into one answer whose
  ``[n]`` citations point at ``response.source_nodes[n - 1]``.
- :func:`fusion_details` / :func:`fusion_result`: the drafts, citations and usage behind a
  response; :func:`cited_nodes`: the source nodes an answer cites.
"""

from __future__ import annotations

from .base import FusionSynthesizer
from .citations import cited_nodes, cited_numbers
from .details import fusion_details, fusion_result
from .prompts import DEFAULT_DRAFT_PROMPT, DEFAULT_FUSE_PROMPT
from .sources import ContextMode, ContextWindowError

__all__ = [
    "DEFAULT_DRAFT_PROMPT",
    "DEFAULT_FUSE_PROMPT",
    "ContextMode",
    "ContextWindowError",
    "FusionSynthesizer",
    "cited_nodes",
    "cited_numbers",
    "fusion_details",
    "fusion_result",
]
