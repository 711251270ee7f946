"""Backends: where candidates and aggregator calls are answered."""

from .base import Backend, Completion, StreamAccumulator, StreamDelta
from .openai import EndpointConfig, OpenAIEndpoint

__all__ = [
    "Backend",
    "Completion",
    "EndpointConfig",
    "OpenAIEndpoint",
    "StreamAccumulator",
    "StreamDelta",
]
