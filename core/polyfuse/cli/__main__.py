"""``python -m polyfuse.cli``: the same as the ``polyfuse`` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
