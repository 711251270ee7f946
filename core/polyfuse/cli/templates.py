"""``polyfuse templates build|show``: thought templates from routing logs, and a look at them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InvalidRequestError
from ._output import err_console, print_warning

__all__ = ["register", "templates_app"]

templates_app = typer.Typer(
    name="templates",
    help="Thought-level fusion: reasoning templates distilled from the best logged answers.",
    no_args_is_help=True,
)

_LOCAL = "local"


def register(app: typer.Typer) -> None:
    """Add the ``templates`` command group to a Typer app."""
    app.add_typer(templates_app, name="templates")


@templates_app.callback()
def _templates_group() -> None:
    from .route import require_routing_extra

    require_routing_extra()


@templates_app.command("build")
def build_command(
    logs: Annotated[list[Path], typer.Argument(help="Routing logs (JSONL) with responses.")],
    endpoint: Annotated[
        str,
        typer.Option(
            help="The summariser: an OpenAI-compatible /v1 root, or 'local' for the embedded "
            "model.",
        ),
    ] = _LOCAL,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The summariser model.", show_default=False)
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="POLYFUSE_API_KEY",
            help="Bearer key (prefer the environment).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The template file (JSONL).")] = Path(
        "templates.jsonl"
    ),
    top: Annotated[int, typer.Option(help="Answers summarised per query.")] = 3,
    pool_size: Annotated[int, typer.Option(help="Best answers by score considered first.")] = 5,
    queries_per_task: Annotated[
        int | None, typer.Option(help="At most this many queries per task.", show_default=False)
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Summaries in flight at once.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Tokens per template.")] = 300,
) -> None:
    """Build thought templates: select each query's best answers, summarise them with an LLM."""
    from ..routing.records import read_routing_log
    from ..routing.templates import TemplateBuilder, TemplateStore, select_top_responses

    records = [r for path in logs for r in read_routing_log(path)]
    groups = select_top_responses(
        records, top=top, pool_size=pool_size, queries_per_task=queries_per_task
    )
    built, failed = asyncio.run(
        _build(groups, endpoint, model, api_key, concurrency, max_tokens, TemplateBuilder)
    )
    for failure in failed:
        print_warning(f"no template for {failure.query[:60]!r}: {failure.error}")
    if not built:
        raise InvalidRequestError(f"every one of the {len(failed)} summaries failed; none written")
    path = TemplateStore(built).save(out)
    err_console().print(
        f"wrote {len(built)} templates to {escape(str(path))}"
        + (f" ({len(failed)} queries failed)" if failed else "")
    )
    if failed:
        raise typer.Exit(1)


async def _build(
    groups: Any,
    endpoint: str,
    model: str | None,
    api_key: str | None,
    concurrency: int,
    max_tokens: int,
    builder_type: Any,
) -> Any:
    from ..backends.openai import OpenAIEndpoint

    console = err_console()
    with Progress(
        TextColumn("[bold]summarising"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("summarising", total=len(groups))

        def advance(n: int) -> None:
            progress.advance(task, n)

        if endpoint == _LOCAL:
            if model is not None:
                raise InvalidRequestError("'local' serves the embedded model; drop --model")
            from ..local import LocalModel

            async with LocalModel(slots=concurrency, show_progress=console.is_terminal) as local:
                builder = builder_type(
                    local.endpoint(), concurrency=concurrency, max_tokens=max_tokens
                )
                return await builder.abuild(groups, on_progress=advance)
        if model is None:
            raise InvalidRequestError("--model NAME is required with --endpoint URL")
        backend = OpenAIEndpoint(endpoint, model, api_key=api_key)
        try:
            builder = builder_type(backend, concurrency=concurrency, max_tokens=max_tokens)
            return await builder.abuild(groups, on_progress=advance)
        finally:
            await backend.aclose()


@templates_app.command("show")
def show_command(
    path: Annotated[Path, typer.Argument(help="A template file (JSONL).")],
    query: Annotated[
        str | None,
        typer.Option(
            help="Show the templates retrieved for this query instead of all.", show_default=False
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="The query's task (same-task templates come first).", show_default=False),
    ] = None,
    k: Annotated[int, typer.Option(help="Templates retrieved for --query.")] = 3,
    prompt: Annotated[
        bool, typer.Option(help="With --query: print the prompt the ThoughtTemplates step makes.")
    ] = False,
) -> None:
    """List templates, or show which ones a query retrieves (and the prompt they make)."""
    from ..routing.templates import TemplateStore, ThoughtTemplates

    store = TemplateStore.load(path)
    console = err_console()
    table = Table(show_lines=True)
    if query is None:
        for column in ("task", "query", "template", "models"):
            table.add_column(column)
        for t in store.templates:
            table.add_row(
                escape(t.task or "-"),
                escape(t.query[:120]),
                escape(t.template),
                escape(", ".join(t.models)),
            )
        table.title = f"{len(store.templates)} templates in {escape(str(path))}"
        console.print(table)
        return
    matches = store.retrieve(query, task, k)
    for column in ("similarity", "task", "query", "template"):
        table.add_column(column)
    for m in matches:
        table.add_row(
            f"{m.similarity:.3f}",
            escape(m.template.task or "-"),
            escape(m.template.query[:120]),
            escape(m.template.template),
        )
    table.title = f"templates retrieved for the query (task {escape(task or 'unknown')})"
    console.print(table)
    if prompt:
        request = ThoughtTemplates(store, task=task, k=k).apply(query)
        for message in request.wire_messages:
            typer.echo(f"--- {message['role']}\n{message['content']}")
