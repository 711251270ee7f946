"""``polyfuse probe``: what a server really does (``n``, usage, streaming, tools, latency)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..backends.openai import OpenAIEndpoint
from ..errors import InvalidRequestError
from ..local import LocalModel
from ..probe import ProbeReport, probe_endpoint

__all__ = ["probe_command", "register", "render_report"]

_LOCAL = "local"


def register(app: typer.Typer) -> None:
    """Add the ``probe`` command to a Typer app."""
    app.command("probe")(probe_command)


def probe_command(
    url: Annotated[
        str,
        typer.Argument(
            help="The server's base URL (e.g. http://127.0.0.1:8000/v1), or 'local' for the "
            "embedded model.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="The model to probe.", show_default=False),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="POLYFUSE_API_KEY",
            help="Bearer key (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Choices asked for in the n check.")] = 3,
    max_tokens: Annotated[int, typer.Option(help="Tokens per probe answer.")] = 8,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print only the report as JSON.", metavar="")
    ] = False,
) -> None:
    """Probe an OpenAI-compatible server and print the profile polyfuse should use for it."""
    if n < 2:
        raise InvalidRequestError(f"--n must be at least 2 to tell whether n is honoured (got {n})")
    if max_tokens < 1:
        raise InvalidRequestError(f"--max-tokens must be at least 1 (got {max_tokens})")
    report = asyncio.run(_probe(url, model, api_key, n=n, max_tokens=max_tokens))
    if json_output:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        render_report(report)


async def _probe(
    url: str, model: str | None, api_key: str | None, *, n: int, max_tokens: int
) -> ProbeReport:
    if url == _LOCAL:
        if model is not None:
            raise InvalidRequestError("'local' serves the embedded model; drop --model")
        async with LocalModel(slots=max(n, 2), show_progress=True) as local:
            return await probe_endpoint(local.endpoint(), n=n, max_tokens=max_tokens)
    if model is None:
        raise InvalidRequestError("--model NAME is required (the model the server serves)")
    endpoint = OpenAIEndpoint(url, model, api_key=api_key, max_retries=0)
    return await probe_endpoint(endpoint, n=n, max_tokens=max_tokens)


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def render_report(report: ProbeReport) -> None:
    """Print a report as a table (stdout) with its notes."""
    from rich.console import Console

    console = Console(highlight=False)
    table = Table(title=escape(f"{report.model} at {report.base_url}"), title_justify="left")
    table.add_column("check")
    table.add_column("result")
    n_text = escape(f"{report.n} ({report.n_detail})")
    if report.n_usage is not None:
        n_text += f"; usage: {report.n_usage}"
    table.add_row("n > 1", n_text)
    table.add_row("usage (non-streaming)", _yes(report.usage))
    if report.streaming:
        table.add_row("usage in streams (include_usage)", _yes(report.stream_usage))
        table.add_row(escape("stream ends with [DONE]"), _yes(report.stream_done))
    else:
        table.add_row("streaming", f"[red]fails[/] ({escape(report.streaming_detail or '')})")
    tools = report.tool_calls + (
        f" ({report.tool_calls_detail})" if report.tool_calls_detail else ""
    )
    table.add_row("tool calls (forced)", escape(tools))
    table.add_row("latency", f"{report.latency_s:.3f} s for {report.max_tokens} tokens")
    if report.ttft_s is not None:
        table.add_row("time to first token", f"{report.ttft_s:.3f} s")
    if report.stream_tokens_per_s is not None:
        table.add_row("decode speed", f"{report.stream_tokens_per_s:.0f} tokens/s")
    table.add_row("served model", escape(report.served_model or "?"))
    table.add_row("[bold]use supports_n[/]", f"[bold]{report.supports_n}[/]")
    console.print(table)
    for note in report.notes:
        console.print(f"• {escape(note)}")
