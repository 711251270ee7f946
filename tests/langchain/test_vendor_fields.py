"""Vendor sampling fields (``top_k``) reach the server through ``extra_body``; the bare form
is refused with a message that shows the working one."""

from __future__ import annotations

import pytest

from langchain_polyfuse import ChatFusion
from polyfuse import InvalidRequestError
from polyfuse.testing import FakeOpenAIServer


def test_top_k_in_extra_body_reaches_every_candidate(fake: FakeOpenAIServer, fake_url: str) -> None:
    llm = ChatFusion(base_url=fake_url, model="m", n=2, model_kwargs={"extra_body": {"top_k": 5}})
    assert llm.invoke("hi").content
    candidates = [r for r in fake.requests if r["messages"][0]["role"] != "system"]
    assert candidates and all(r["top_k"] == 5 for r in candidates)


def test_bare_top_k_is_refused_with_the_extra_body_form(
    fake: FakeOpenAIServer, fake_url: str
) -> None:
    llm = ChatFusion(base_url=fake_url, model="m", n=2, model_kwargs={"top_k": 5})
    with pytest.raises(InvalidRequestError, match=r"model_kwargs=\{'extra_body': \{'top_k': 5\}\}"):
        llm.invoke("hi")
    assert fake.requests == []
