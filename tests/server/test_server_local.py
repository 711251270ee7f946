"""The server on the embedded local model (llama.cpp): the real protocol, end to end."""

from __future__ import annotations

import openai
import pytest
from server_helpers import running

pytestmark = pytest.mark.local_model


def test_fused_stream_from_the_embedded_model() -> None:
    config = {
        "endpoints": {"local": {"local": True}},
        "presets": {
            "tiny": {
                "pool": ["local"],
                "n": 2,
                "params": {"max_tokens": 24, "temperature": 0.7},
            }
        },
    }
    with running(config) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="fusion/tiny",
            messages=[{"role": "user", "content": "Name a primary color."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert usage is not None
    # Two candidates and the fusor, each at most 24 completion tokens.
    assert 0 < usage.completion_tokens <= 3 * 24
    assert usage.prompt_tokens > 0
