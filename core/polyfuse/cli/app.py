"""The ``polyfuse`` Typer app: one module per command, and the error policy of all of them.

Each command lives in its own module exposing ``register(app: typer.Typer) -> None``; list
the module in :data:`COMMANDS` to add it.

Exit statuses: 0 success, 1 runtime failure (a server unreachable, every candidate failed, the
local model could not start), 2 usage error (a bad option, an invalid preset file, an invalid
request), 130 interrupted; a command may define more (``polyfuse distill`` uses 3). Errors
are printed as one line, ``error: ...``, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import typer

from ..errors import InvalidRequestError, PolyfuseError
from ._output import print_error

__all__ = ["COMMANDS", "app", "main", "run"]

COMMANDS: list[str] = [
    "ask",
    "probe",
    "serve",
    "distill",
    "eval",
]
"""Command modules of :mod:`polyfuse.cli` (each exposes ``register(app)``), in help order."""

app = typer.Typer(
    name="polyfuse",
    help="Make one better answer out of N: sample candidates, then fuse them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _name in COMMANDS:
    importlib.import_module(f"{__package__}.{_name}").register(app)

# The click exceptions typer raises: from ``click`` up to typer 0.2x, from the copy of click that
# newer typer versions vendor; ``typer.BadParameter`` lives in whichever module it is.
_click_errors = sys.modules[typer.BadParameter.__module__]
_UsageError: type[Exception] = _click_errors.UsageError
_ClickException: type[Exception] = _click_errors.ClickException
_Abort: type[BaseException] = typer.Abort
_NoArgsIsHelp: type[Exception] | None = getattr(_click_errors, "NoArgsIsHelpError", None)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the app on ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    command = typer.main.get_command(app)
    try:
        status = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="polyfuse",
            standalone_mode=False,
        )
    except _UsageError as exc:
        if _NoArgsIsHelp is not None and isinstance(exc, _NoArgsIsHelp):
            return 2  # the help was printed when the error was made
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print_error(f"{exc.format_message()}{where}")  # type: ignore[attr-defined]
        return 2
    except _ClickException as exc:
        print_error(exc.format_message())  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except _Abort:
        print_error("aborted")
        return 130
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except InvalidRequestError as exc:
        print_error(exc)
        return 2
    except PolyfuseError as exc:
        print_error(exc)
        return 1
    except BrokenPipeError:
        # The reader went away (e.g. `polyfuse ask ... | head -1`): stop writing quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status if isinstance(status, int) else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the app and exit with its status."""
    sys.exit(run(argv))
