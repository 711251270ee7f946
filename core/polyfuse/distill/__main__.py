"""``python -m polyfuse.distill ARGS`` is ``polyfuse distill ARGS`` (same flags, same exit
statuses: 0 all rows written, 3 some rows failed, 2 bad input or options, 1 other failure,
130 interrupted)."""

from __future__ import annotations

import sys

from ..cli.app import run


def main() -> None:
    """Run ``polyfuse distill`` with this process's arguments."""
    sys.exit(run(["distill", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
