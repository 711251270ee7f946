"""examples/rag_fusion.py caps answers on the embedded model unless told otherwise."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rag_fusion.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rag_fusion_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_local_answers_are_capped_unless_max_tokens_is_given() -> None:
    example = _example()
    cap = example.answer_cap
    assert cap(argparse.Namespace(local=True, max_tokens=None)) == example.LOCAL_MAX_TOKENS == 256
    assert cap(argparse.Namespace(local=True, max_tokens=1000)) == 1000
    assert cap(argparse.Namespace(local=False, max_tokens=None)) is None
