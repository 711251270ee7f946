"""Test helpers shipped with polyfuse: in-process fake backends, a fake OpenAI-compatible
server, and a way to run it.

In-process (no server): :class:`FunctionBackend` answers from a Python function of the request,
:class:`ScriptedBackend` from a script by role (candidate, fusor, judge, selector, proposer)::

    from polyfuse import Fusion, Pool
    from polyfuse.testing import ScriptedBackend

    backend = ScriptedBackend({"candidate": ["4", "5", "4"], "fusor": "4"})
    assert Fusion(Pool.repeat(backend, 3)).run("2 + 2?").content == "4"

Over HTTP: :class:`FakeOpenAIServer` behaves like vLLM/SGLang/llama.cpp and injects faults::

    from polyfuse.testing import FakeOpenAIServer, Fault, serve

    app = FakeOpenAIServer(n_mode="ignore")
    app.inject(Fault("status", status=429, headers={"Retry-After": "1"}))
    with serve(app) as served:
        ...  # point any OpenAI client at served.base_url

``serve`` needs uvicorn (``pip install polyfuse[testing]``); the rest needs only the standard
library.
"""

from __future__ import annotations

from polyfuse.testing.backends import FunctionBackend, Reply, ReplyFunction, ScriptedBackend
from polyfuse.testing.fake_server import FakeOpenAIServer
from polyfuse.testing.faults import FAULT_KINDS, Fault, FaultKind, LatencyModel
from polyfuse.testing.responder import FakeReply, Responder, default_responder, schema_instance
from polyfuse.testing.serve import ServedApp, serve

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "FunctionBackend",
    "LatencyModel",
    "Reply",
    "ReplyFunction",
    "Responder",
    "ScriptedBackend",
    "ServedApp",
    "default_responder",
    "schema_instance",
    "serve",
]
