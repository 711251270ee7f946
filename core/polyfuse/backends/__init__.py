"""Backends: where candidates and aggregator calls are answered."""

from ._wire import error_message, retry_after_seconds
from .base import Backend, Completion, StreamAccumulator, StreamDelta
from .openai import EndpointConfig, OpenAIEndpoint

__all__ = [
    "Backend",
    "Completion",
    "EndpointConfig",
    "OpenAIEndpoint",
    "StreamAccumulator",
    "StreamDelta",
    "error_message",
    "retry_after_seconds",
]
