"""Every code block of README.md and docs/*.md runs (or is checked), page by page.

One test per page runs its blocks in order against one shared fake server; the blocks that
need the embedded model run in a second test per page, marked ``local_model``. A new page in
``docs/`` is picked up without any change here. See ``docs_blocks.py`` for the directives a page
can use to mark blocks that cannot run in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_blocks import Block, collect
from docs_harness import REPO, PageRunner

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def groups(blocks: list[Block]) -> dict[bool, list[Block]]:
    """Split a page into its fake-server blocks and its embedded-model blocks.

    An output block follows the block it checks; sample files go to both groups.
    """
    split: dict[bool, list[Block]] = {False: [], True: []}
    local = False
    for block in blocks:
        if block.directives.file:
            split[False].append(block)
            split[True].append(block)
            continue
        if not (block.directives.output or block.directives.contains):
            local = block.directives.local_model
        split[local].append(block)
    return split


def _cases() -> list[object]:
    cases: list[object] = []
    for page in PAGES:
        split = groups(collect(page))
        if any(not b.directives.file for b in split[False]):
            cases.append(pytest.param(page, False, id=page.name))
        if any(not b.directives.file for b in split[True]):
            cases.append(
                pytest.param(page, True, id=f"{page.name}-local", marks=pytest.mark.local_model)
            )
    return cases


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("page", "local"), _cases())
def test_page(
    page: Path, local: bool, docs_server_url: str, docs_env: dict[str, str], tmp_path: Path
) -> None:
    blocks = groups(collect(page))[local]
    with PageRunner(tmp_path, docs_server_url, docs_env) as runner:
        outcomes = runner.run(blocks)
    failures = [o for o in outcomes if not o.ok]
    report = "\n\n".join(f"== {o.where}\n{o.detail}" for o in failures)
    assert not failures, f"{len(failures)} of {len(outcomes)} checks failed:\n\n{report}"


def test_every_page_is_collected() -> None:
    names = {p.name for p in PAGES}
    assert "README.md" in names and "local-and-cli.md" in names
    for page in PAGES:
        collect(page)  # unknown directives fail here, naming the page and line
