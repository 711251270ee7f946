"""The ``polyfuse`` command line (typer + rich): ``polyfuse ask``, ``polyfuse probe``, ...

Install it with ``pip install ".[cli]"`` (in a polyfuse checkout) (``polyfuse[local]`` adds the embedded model).
The entry point :func:`main` checks for typer and rich before importing anything that needs
them, so a core-only install gets a one-line hint instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

_NEEDED = ("typer", "rich")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``polyfuse`` command and exit with its status (0 ok, 1 failure, 2 usage)."""
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"polyfuse: the command line needs {' and '.join(missing)}: "
            "pip install '.[cli]' in a polyfuse checkout\n"
        )
        sys.exit(1)
    from .app import main as run_app

    run_app(argv)
