"""The contenders: polyfuse and what users would write instead, on the same workload."""

from __future__ import annotations

from .base import Contender, ContenderUnavailable
from .langchain_parallel import LangChainContender
from .llamaindex_tree import LlamaIndexContender
from .openai_gather import OpenAIGatherContender, OpenAINContender
from .optillm_moa import OptiLLMContender, optillm_executable
from .polyfuse_engine import PolyfuseContender, PolyfuseFanoutContender
from .raw_socket import RawNContender, RawSocketContender

__all__ = [
    "CONTENDERS",
    "PEERS",
    "Contender",
    "ContenderUnavailable",
    "LangChainContender",
    "LlamaIndexContender",
    "OpenAIGatherContender",
    "OpenAINContender",
    "OptiLLMContender",
    "PolyfuseContender",
    "PolyfuseFanoutContender",
    "RawNContender",
    "RawSocketContender",
    "optillm_executable",
]

CONTENDERS: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        RawSocketContender,
        RawNContender,
        PolyfuseContender,
        PolyfuseFanoutContender,
        OpenAIGatherContender,
        OpenAINContender,
        LangChainContender,
        LlamaIndexContender,
        OptiLLMContender,
    )
}
"""Every contender by name."""

PEERS: tuple[str, ...] = ("openai-gather", "langchain", "llamaindex")
"""What users would write instead; targets are ratios to the best of these."""
