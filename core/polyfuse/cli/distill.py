"""``polyfuse distill``: prompts in, fused training records out (resumable, with provenance)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..distill import (
    DistillSpec,
    DistillSummary,
    InputSpec,
    PriceTable,
    RichProgress,
    adistill,
)
from ..distill.spec import Chosen, RecordFormat, Strategy
from ..errors import InvalidRequestError, PolyfuseError
from ..presets import STRATEGIES
from ._fusion_flags import FusionFlags, takes_fusion_flags
from ._output import print_error
from ._stoppable import EXIT_STOPPED, run_stoppable

__all__ = ["EXIT_ROWS_FAILED", "distill_command", "outstanding", "register"]

EXIT_ROWS_FAILED = 3
"""Exit status when the run finished but some rows have no record: they failed in this run,
or failed in an earlier one and were not retried (``--retry-errors``)."""


def _did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """``"; did you mean 'best-of-n'?"`` for a near miss (difflib), else ``""``."""
    options = list(allowed)
    by_key = {option.replace("-", "").replace("_", "").lower(): option for option in options}
    key = value.replace("-", "").replace("_", "").lower()
    close = [by_key[key]] if key in by_key else difflib.get_close_matches(value, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _strategies(text: str | None) -> tuple[Strategy, ...]:
    if not text:
        return ()
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in STRATEGIES:
            raise typer.BadParameter(
                f"{name!r} is not one of {', '.join(STRATEGIES)}{_did_you_mean(name, STRATEGIES)}"
            )
    return tuple(names)  # type: ignore[return-value]


def _spec(
    *,
    config: Path | None,
    preset: str | None,
    teachers: list[str],
    fusor: str | None,
    judge: str | None,
    n: int | None,
    api_key_env: str | None,
    max_concurrency: int | None,
    params: dict[str, Any],
    options: dict[str, Any],
) -> DistillSpec:
    if config is not None:
        if teachers or fusor:
            raise typer.BadParameter("use either --config/--preset or --teacher/--fusor, not both")
        if n is not None or api_key_env or max_concurrency is not None:
            raise typer.BadParameter(
                "--n, --api-key-env and --max-concurrency go with --teacher; with --config, "
                "set n in the preset and api_key_env / max_concurrency on its endpoints"
            )
        if not preset:
            raise typer.BadParameter("--config needs --preset NAME")
        return DistillSpec.from_file(config, preset, judge=judge, params=params, **options)
    if preset:
        raise typer.BadParameter("--preset needs --config FILE")
    if not teachers:
        raise typer.BadParameter(
            "name the teachers: --teacher MODEL@BASE_URL (repeat it), or --config/--preset"
        )
    endpoint_options: dict[str, Any] = {}
    if api_key_env:
        endpoint_options["api_key_env"] = api_key_env
    if max_concurrency is not None:
        endpoint_options["max_concurrency"] = max_concurrency
    strategies = options.get("aggregations") or ("fuse",)
    return DistillSpec.from_endpoints(
        teachers,
        fusor=fusor,
        judge=judge,
        n=n if n is not None else 1,
        strategy=strategies[0],
        endpoint_options=endpoint_options,
        params=params,
        **options,
    )


def _prices(entries: list[str], path: Path | None) -> PriceTable | None:
    table = PriceTable.from_file(path) if path is not None else PriceTable({})
    if entries:
        table = table.merged(PriceTable.parse(entries))
    return table if table else None


def _cost(summary: DistillSummary, priced: bool) -> str:
    """The cost line: ``unknown`` rather than a made-up ``$0`` when nothing had a price."""
    if not priced:
        return "unknown (no prices: --price NAME=INPUT/OUTPUT or --prices FILE)"
    return f"${summary.stats.cost_usd:.4f} (priced teachers only)"


def outstanding(summary: DistillSummary) -> int:
    """Rows that have no record: failed in this run, or failed before and not retried."""
    return summary.stats.failed + summary.skipped_failed


def _print_summary(
    console: Console, summary: DistillSummary, *, priced: bool, list_problems: bool
) -> None:
    stats = summary.stats
    rows: list[tuple[str, str]] = [("records written", f"{stats.written} → {summary.output}")]
    if stats.failed:
        rows.append(("rows failed", f"{stats.failed} → {summary.errors} (retry: --retry-errors)"))
    rows.append(("already done", str(summary.already_done)))
    if summary.skipped_failed:
        rows.append(("skipped, failed before", f"{summary.skipped_failed} (--retry-errors)"))
    if summary.duplicates:
        rows.append(("duplicate prompts", str(summary.duplicates)))
    if summary.problem_count:
        where = "listed below" if list_problems else "listed above"
        rows.append(("bad input lines", f"{summary.problem_count} ({where})"))
    rows.append(("tokens", f"{stats.tokens:,}"))
    rows.append(("cost", _cost(summary, priced)))
    if stats.done:
        rows.append(("time", f"{stats.elapsed_s:.1f} s ({stats.rows_per_s:.2f} rows/s)"))
    width = max(len(label) for label, _ in rows)
    console.print("[bold]polyfuse distill[/]")
    for label, value in rows:
        console.print(f"  {label.ljust(width)}  {escape(value)}", soft_wrap=True, highlight=False)
    if not list_problems:  # the live progress view printed them when the run started
        return
    for problem in summary.problems:
        console.print(f"  bad input {escape(str(problem))}", soft_wrap=True, highlight=False)
    if summary.problem_count > len(summary.problems):
        console.print(f"  ... and {summary.problem_count - len(summary.problems)} more")


@takes_fusion_flags(without=("hedge_fallback",))
def distill_command(
    input: Annotated[Path, typer.Argument(help="Prompts: .jsonl, .csv or .parquet.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Records file (JSONL).")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Presets TOML file.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", "-p", help="Preset naming the teachers and the fusor."),
    ] = None,
    teacher: Annotated[
        list[str] | None,
        typer.Option("--teacher", "-t", help="Teacher [NAME=]MODEL@BASE_URL (repeat)."),
    ] = None,
    fusor: Annotated[
        str | None, typer.Option(help="Fusor [NAME=]MODEL@BASE_URL (default: 1st teacher).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="Judge: MODEL@BASE_URL, or an endpoint name with --config."),
    ] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Samples per teacher [1].")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Env var holding the endpoints' API key.")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight per endpoint.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="sft | alpaca | preference")
    ] = "sft",
    aggregations: Annotated[
        str | None,
        typer.Option(help="Comma list, primary first, e.g. fuse,best-of-n (same candidates)."),
    ] = None,
    chosen: Annotated[
        str, typer.Option(help="Preference pairs: chosen = primary | best (candidate).")
    ] = "primary",
    score_primary: Annotated[
        bool, typer.Option(help="Judge-score the primary (e.g. fused) answer too.", metavar="")
    ] = False,
    prompt_field: Annotated[
        str | None, typer.Option(help="Field with the prompt (default: messages, prompt).")
    ] = None,
    id_field: Annotated[str | None, typer.Option(help="Field copied into provenance.")] = None,
    system: Annotated[str | None, typer.Option(help="System message for every prompt.")] = None,
    input_format: Annotated[str, typer.Option(help="auto | jsonl | csv | parquet")] = "auto",
    errors: Annotated[
        Path | None, typer.Option(help="Errors file (default: OUTPUT.errors.jsonl).")
    ] = None,
    retry_errors: Annotated[
        bool, typer.Option(help="Retry the rows that failed in earlier runs.", metavar="")
    ] = False,
    price: Annotated[
        list[str] | None,
        typer.Option(help="NAME=INPUT/OUTPUT USD per 1M tokens (repeat)."),
    ] = None,
    prices: Annotated[Path | None, typer.Option(help="Prices file (TOML or JSON).")] = None,
    engine: Annotated[str, typer.Option(help="asyncio | ray")] = "asyncio",
    ray_actors: Annotated[int, typer.Option(min=1, help="Ray engine: actors.")] = 2,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    max_rows_in_flight: Annotated[
        int | None, typer.Option(min=1, help="Override the rows kept in flight.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many new rows.")] = None,
    fsync: Annotated[bool, typer.Option(help="fsync every batch of lines.", metavar="")] = True,
    allow_mixed_config: Annotated[
        bool, typer.Option(help="Append to an output made with another configuration.", metavar="")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show the live progress bar.", metavar="")] = True,
    *,
    fusion_flags: FusionFlags,
) -> None:
    """Make training data from prompts: sample the teachers, fuse, write records with provenance.

    Resumable: rerun the same command after a crash and it skips what is done. Ctrl-C once
    starts no new row and lets those in flight finish; twice stops at once.
    """
    console = Console(stderr=True)
    choices = {
        "format": (format, ("sft", "alpaca", "preference")),
        "chosen": (chosen, ("primary", "best")),
        "engine": (engine, ("asyncio", "ray")),
        "input-format": (input_format, ("auto", "jsonl", "csv", "parquet")),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise typer.BadParameter(
                f"--{flag} must be one of {', '.join(allowed)}{_did_you_mean(value, allowed)}"
            )
    params = {
        k: v
        for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
        if v is not None
    }
    fmt: RecordFormat = format  # type: ignore[assignment]
    pick: Chosen = chosen  # type: ignore[assignment]
    options: dict[str, Any] = {
        "format": fmt,
        "chosen": pick,
        "score_primary": score_primary,
        "aggregations": _strategies(aggregations),
    }
    try:
        spec = _spec(
            config=config,
            preset=preset,
            teachers=list(teacher or []),
            fusor=fusor,
            judge=judge,
            n=n,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            params=params,
            options=options,
        ).with_fusion(fusion_flags.overrides())
        source = InputSpec(
            input,
            format=input_format,  # type: ignore[arg-type]
            prompt_field=prompt_field,
            id_field=id_field,
            system=system,
        )
        price_table = _prices(list(price or []), prices)
        # Ctrl-C once: no new row starts, those in flight finish and are written
        summary, stopped = run_stoppable(
            lambda stop: adistill(
                source,
                output,
                spec,
                errors=errors,
                retry_errors=retry_errors,
                engine=engine,  # type: ignore[arg-type]
                prices=price_table,
                progress=RichProgress(console, priced=price_table is not None)
                if progress
                else None,
                max_rows_in_flight=max_rows_in_flight,
                limit=limit,
                fsync=fsync,
                allow_mixed_config=allow_mixed_config,
                ray_actors=ray_actors,
                ray_address=ray_address,
                stop=stop,
            ),
            graceful=engine == "asyncio",
            console=console,
        )
    except InvalidRequestError as exc:  # bad input, output, presets or flags
        print_error(exc)
        raise typer.Exit(2) from None
    except PolyfuseError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    _print_summary(console, summary, priced=price_table is not None, list_problems=not progress)
    left = summary.stats.remaining
    if stopped is not None and left > 0:
        console.print(
            f"[yellow]stopped ({escape(stopped)}): {left} row(s) not started[/]; rerun the "
            "same command to continue",
            highlight=False,
        )
        raise typer.Exit(EXIT_STOPPED)
    if outstanding(summary):
        # Also when every failure is from an earlier run: the output is still incomplete.
        raise typer.Exit(EXIT_ROWS_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ``distill`` command to a Typer app."""
    app.command(
        "distill",
        help=distill_command.__doc__,
        no_args_is_help=True,
    )(distill_command)
