"""Test helpers shipped with polyfuse: a fake OpenAI-compatible server and a way to run it.

Example::

    from polyfuse.testing import FakeOpenAIServer, Fault, serve

    app = FakeOpenAIServer(n_mode="ignore")
    app.inject(Fault("status", status=429, headers={"Retry-After": "1"}))
    with serve(app) as served:
        ...  # point any OpenAI client at served.base_url

``serve`` needs uvicorn (``pip install polyfuse[testing]``); the app itself needs only the
standard library.
"""

from __future__ import annotations

from polyfuse.testing.fake_server import (
    FAULT_KINDS,
    FakeOpenAIServer,
    FakeReply,
    Fault,
    FaultKind,
    LatencyModel,
    Responder,
    default_responder,
    schema_instance,
)
from polyfuse.testing.serve import ServedApp, serve

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "LatencyModel",
    "Responder",
    "ServedApp",
    "default_responder",
    "schema_instance",
    "serve",
]
