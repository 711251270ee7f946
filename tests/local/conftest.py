"""One embedded model per test module (starting one costs ~1 s plus the model's memory)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyfuse.local import LocalModel


@pytest.fixture(scope="module")
def local_model() -> Iterator[LocalModel]:
    """A started SmolLM2 server with 4 slots (3 candidates + the fusor), stopped afterwards."""
    model = LocalModel(slots=4, ctx_per_slot=2048)
    model.start()
    yield model
    model.stop()
