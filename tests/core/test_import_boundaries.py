"""Import boundaries: private modules and names stay inside the package that owns them.

``polyfuse._sync``, ``polyfuse.backends._wire``, ``llama_index.llms.polyfuse._convert``, ...
may change at any time; code outside their package (the integrations, examples, benchmarks,
tests) uses the public seams instead (``polyfuse.sync``, ``polyfuse.backends``,
``llama_index.llms.polyfuse``). A ruff rule cannot say "any private module" (``banned-api``
lists exact names), so this test walks every import in the repository.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["integrations", "examples", "benchmarks", "tests"]  # core/polyfuse is one package
OWN_PACKAGES = [
    "polyfuse",
    "langchain_polyfuse",
    "llama_index.llms.polyfuse",
    "llama_index.embeddings.polyfuse",
    "llama_index.response_synthesizers.polyfuse",
]

ALLOWED: dict[str, str] = {
    # tests of a private module's own behaviour, which has no public face
    "tests/core/test_http.py": "tests the lean HTTP client (polyfuse.backends._http) directly",
    "tests/http": "tests the lean HTTP client and its retry policy directly",
    "tests/core/test_spec.py": "builds `polyfuse ask` plans (polyfuse.cli._plan) without a shell",
    "tests/local/test_catalog_options.py": "builds `polyfuse ask` plans (polyfuse.cli._plan) "
    "for local model names without a shell",
    "tests/local/test_download.py": "tests the part download's integrity checks "
    "(polyfuse.local._integrity) directly",
    "tests/cli/test_ask_output.py": "checks the ask table's batched-usage caption "
    "(polyfuse.cli._view.BATCHED_NOTE) word for word",
    "tests/adaptive/test_adaptive_flags.py": "maps the adaptive/hedging flags "
    "(polyfuse.cli._fusion_flags) onto `polyfuse ask` plans (polyfuse.cli._plan) without a shell",
}


def _module_of(path: Path) -> str:
    """The dotted module name a file is imported as (``tests.x`` for files outside packages)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    for root in (["core"], ["integrations", "langchain"], ["integrations", "llamaindex"]):
        if parts[: len(root)] == root:
            parts = parts[len(root) :]
            break
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _private_owner(dotted: str) -> str | None:
    """For ``a.b._c.d`` the package that owns the private part (``a.b``); None if public."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _is_ours(dotted: str) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in OWN_PACKAGES)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import (module, or module.name for from)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _allowed(rel: str) -> bool:
    return any(rel == key or rel.startswith(key + "/") for key in ALLOWED)


def _violations() -> list[str]:
    found: list[str] = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/." in rel or rel.startswith(".") or _allowed(rel):
                continue
            here = _module_of(path)
            for line, dotted in _imports(path):
                if not _is_ours(dotted):
                    continue
                owner = _private_owner(dotted)
                if owner is None or here == owner or here.startswith(owner + "."):
                    continue
                found.append(f"{rel}:{line}: imports private {dotted} (owned by {owner})")
    return found


def test_no_private_imports_across_packages() -> None:
    violations = _violations()
    assert not violations, "use the public API instead:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("dotted", "owner"),
    [
        ("polyfuse._sync", "polyfuse"),
        ("polyfuse.backends._wire.error_message", "polyfuse.backends"),
        ("polyfuse.aggregators._render", "polyfuse.aggregators"),
        ("llama_index.llms.polyfuse._convert", "llama_index.llms.polyfuse"),
        ("polyfuse.__version__", None),
        ("polyfuse.sync.run_sync", None),
    ],
)
def test_the_rule_finds_private_parts(dotted: str, owner: str | None) -> None:
    assert _private_owner(dotted) == owner


def test_module_names_of_files() -> None:
    assert _module_of(ROOT / "core/polyfuse/backends/_wire.py") == "polyfuse.backends._wire"
    assert _module_of(ROOT / "integrations/langchain/langchain_polyfuse/x.py") == (
        "langchain_polyfuse.x"
    )
    synth = ROOT / "integrations/llamaindex/llama_index/response_synthesizers/polyfuse/base.py"
    assert _module_of(synth) == "llama_index.response_synthesizers.polyfuse.base"
