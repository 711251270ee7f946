"""polyfuse for LlamaIndex embeddings: :class:`OpenAICompatibleEmbedding` reads vectors from
any OpenAI-compatible ``/v1/embeddings`` endpoint (llama.cpp, vLLM, Ollama, TEI, hosted APIs,
polyfuse's embedded local model) with httpx, no ``openai`` package needed."""

from __future__ import annotations

from .base import OpenAICompatibleEmbedding

__all__ = ["OpenAICompatibleEmbedding"]
