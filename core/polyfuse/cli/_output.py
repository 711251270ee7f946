"""Consoles and one-line messages shared by the commands."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import NoCandidatesError

__all__ = ["err_console", "one_line", "print_error", "print_warning"]


def err_console() -> Console:
    """A console on stderr (progress, tables, diagnostics: never the answer)."""
    return Console(stderr=True, highlight=False)


def one_line(error: BaseException | str) -> str:
    """An error as a single line: whitespace collapsed, failure lists summarised."""
    if isinstance(error, NoCandidatesError):
        reasons: list[str] = []
        for _, failure in error.failures:
            text = one_line(failure) if isinstance(failure, BaseException) else failure
            text = " ".join(str(text).split())
            if text not in reasons:
                reasons.append(text)
        head = f"all {len(error.failures)} candidates failed"
        if not reasons:
            return head
        more = f" (and {len(reasons) - 1} other errors)" if len(reasons) > 1 else ""
        return f"{head}: {reasons[0]}{more}"
    text = str(error) if isinstance(error, str) else (str(error) or type(error).__name__)
    return " ".join(text.split())


def print_error(error: BaseException | str) -> None:
    """``error: <one line>`` on stderr."""
    err_console().print(f"[bold red]error:[/] {escape(one_line(error))}", soft_wrap=True)


def print_warning(message: str) -> None:
    """``warning: <one line>`` on stderr."""
    err_console().print(f"[yellow]warning:[/] {escape(one_line(message))}", soft_wrap=True)
