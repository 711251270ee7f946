"""The session's shared embedded model, under the name this folder's tests use."""

from __future__ import annotations

import pytest

from polyfuse.local import LocalModel


@pytest.fixture(scope="session")
def local_model(embedded_model: LocalModel) -> LocalModel:
    """A started SmolLM2 server with 4 slots (3 candidates + the fusor); shared, never stopped
    by a test."""
    return embedded_model
