"""The live view of ``polyfuse ask``: candidates arriving (stderr), then the answer (stdout).

Progress, tables and the summary go to stderr; stdout carries only the answer (and the
candidates with ``--show-candidates``), so ``polyfuse ask ... > answer.txt`` keeps just that.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..events import (
    AggregationStarted,
    AnswerRestarted,
    CandidateFailed,
    CandidateFinished,
    CandidateStarted,
    FusedToken,
    FusionDone,
    FusionEvent,
)
from ..results import Candidate, FusionResult
from ..usage import Usage

__all__ = ["AskView", "summary_line"]

_PREVIEW_CHARS = 60


@dataclass
class _Row:
    backend: str
    candidate: Candidate | None = None


class AskView:
    """Renders a fusion's events; use as a context manager around the event loop."""

    def __init__(
        self,
        *,
        size: int,
        show_candidates: bool,
        err: Console | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.err = err or Console(stderr=True, highlight=False)
        self.out = out or sys.stdout
        self.show_candidates = show_candidates
        self.rows: dict[int, _Row] = {}
        self.size = size
        self._live = Live(self._table(), console=self.err, refresh_per_second=8, transient=False)
        self._live_on = False
        self._answer_started = False

    def __enter__(self) -> AskView:
        self._live.start()
        self._live_on = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_live()
        if self._answer_started:
            self.out.write("\n")
            self.out.flush()

    # ------------------------------------------------------------------ events

    def handle(self, event: FusionEvent) -> None:
        """Show one event."""
        if isinstance(event, CandidateStarted):
            self.rows[event.index] = _Row(backend=event.backend)
            self._refresh()
        elif isinstance(event, (CandidateFinished, CandidateFailed)):
            candidate = event.candidate
            self.rows[candidate.index] = _Row(backend=candidate.backend, candidate=candidate)
            self._refresh()
        elif isinstance(event, AggregationStarted):
            self._stop_live()
            if self.show_candidates:
                self._print_candidates()
            self.err.rule(f"[bold]answer[/] ({escape(event.method)})", style="dim")
        elif isinstance(event, FusedToken):
            self._answer_started = True
            self.out.write(event.delta)
            self.out.flush()
        elif isinstance(event, AnswerRestarted):
            if self._answer_started:
                self.out.write("\n")
                self.out.flush()
            self.err.print(
                f"[yellow]the aggregator failed ({escape(event.reason)}); "
                "showing the best candidate instead:[/]"
            )
        elif isinstance(event, FusionDone):
            self._stop_live()
            if self._answer_started:
                self.out.write("\n")
                self.out.flush()
                self._answer_started = False
            self.err.print(summary_line(event.result), style="dim", soft_wrap=True)

    # ------------------------------------------------------------------ rendering

    def _refresh(self) -> None:
        if self._live_on:
            self._live.update(self._table())

    def _stop_live(self) -> None:
        if self._live_on:
            self._live.update(self._table())
            self._live.stop()
            self._live_on = False
            if not self.err.is_terminal:
                self.err.line()  # a non-terminal Live leaves its last line open

    def _table(self) -> Table:
        batched = any(
            row.candidate is not None and row.candidate.ok and row.candidate.usage.calls == 0
            for row in self.rows.values()
        )
        table = Table(
            title=f"{self.size} candidates",
            title_justify="left",
            expand=True,
            caption=BATCHED_NOTE if batched else None,
            caption_justify="left",
        )
        table.add_column("#", justify="right", no_wrap=True, min_width=2)
        table.add_column("model", no_wrap=True, max_width=24, overflow="ellipsis")
        table.add_column("status", no_wrap=True, min_width=9)
        table.add_column("time", justify="right", no_wrap=True, min_width=5)
        table.add_column("tokens", justify="right", no_wrap=True, min_width=6)
        table.add_column("answer", overflow="ellipsis", no_wrap=True, ratio=1)
        for index in sorted(self.rows):
            row = self.rows[index]
            table.add_row(str(index), row.backend, *self._cells(row))
        return table

    @staticmethod
    def _cells(row: _Row) -> tuple[RenderableType, str, str, str]:
        candidate = row.candidate
        if candidate is None:
            return Spinner("dots", text="sampling", style="cyan"), "", "", ""
        latency = f"{candidate.latency_s:.1f}s" if candidate.latency_s is not None else ""
        if candidate.ok:
            tokens = _tokens_cell(candidate.usage)
            preview = " ".join(candidate.text.split())[:_PREVIEW_CHARS]
            if not preview and candidate.tool_calls:
                preview = ", ".join(call.function.name for call in candidate.tool_calls) + "()"
            return Text("done", style="green"), latency, tokens, preview
        reason = candidate.error.message if candidate.error else candidate.status
        style = "yellow" if candidate.status == "cancelled" else "red"
        return Text(candidate.status, style=style), latency, "", " ".join(reason.split())

    def _print_candidates(self) -> None:
        console = Console(file=self.out, highlight=False)
        for index in sorted(self.rows):
            candidate = self.rows[index].candidate
            if candidate is None or not candidate.ok:
                continue
            body = candidate.text or ", ".join(
                f"{call.function.name}({call.function.arguments})"
                for call in candidate.tool_calls or ()
            )
            console.print(
                Panel(
                    Text(body),
                    title=f"candidate #{index} · {escape(candidate.backend)}",
                    title_align="left",
                )
            )


BATCHED_NOTE = (
    "batched: one request with n > 1 answered these candidates; "
    "its tokens are counted on the first of them"
)
"""Caption under the table when a server honoured ``n`` (its usage covers the whole batch)."""


def _tokens_cell(usage: Usage) -> str:
    """Completion tokens; ``batched`` for the later choices of one ``n > 1`` request (their
    tokens are in the first choice's usage); ``n/a`` when the server reported no usage."""
    if usage.calls == 0:
        return "batched"
    if usage.calls_without_usage:
        return "n/a"
    return str(usage.completion_tokens)


def summary_line(result: FusionResult) -> str:
    """One line: method, candidates, time, tokens by role, adaptive sampling and the calls it
    saved, fallback if any."""
    usage = result.usage
    total = usage.total
    ok = len(result.succeeded)
    parts = [
        result.aggregation.method,
        f"{ok}/{len(result.candidates)} candidates",
        f"{result.latency_s:.1f} s",
        f"{total.total_tokens} tokens (candidates {usage.candidates.total_tokens}, "
        f"aggregator {usage.aggregator.total_tokens}, judge {usage.judge.total_tokens})",
    ]
    sampling = result.sampling
    if sampling is not None:
        parts.append(
            f"adaptive: {sampling.samples_used} of {sampling.max_samples} samples "
            f"({sampling.stop_reason})"
        )
    if any(note.startswith("consensus shortcut") for note in result.aggregation.notes):
        parts.append("consensus shortcut: no aggregator call")
    saved = usage.saved
    if saved.calls:
        tokens = f", ~{saved.total_tokens} tokens" if not saved.calls_without_usage else ""
        parts.append(f"saved {saved.calls} call(s){tokens}")
    if result.aggregation.selected is not None:
        parts.append(f"selected #{result.aggregation.selected}")
    if result.aggregation.fallback_reason:
        parts.append(f"fallback: {result.aggregation.fallback_reason}")
    if not total.complete:
        parts.append(f"{total.calls_without_usage} call(s) reported no usage")
    return " · ".join(" ".join(part.split()) for part in parts)
