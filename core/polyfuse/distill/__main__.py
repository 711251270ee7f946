"""``python -m polyfuse.distill``: the ``distill`` command on its own (same as ``polyfuse distill``)."""

from __future__ import annotations

import typer

from ..cli.distill import distill_command


def main() -> None:
    """Run the ``distill`` command."""
    typer.run(distill_command)


if __name__ == "__main__":
    main()
