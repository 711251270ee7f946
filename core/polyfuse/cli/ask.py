"""``polyfuse ask``: sample N answers and fuse them, live in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from ..errors import InvalidRequestError
from ..local.catalog import DEFAULT_LOCAL_MODEL, LOCAL_MODELS
from ..local.gguf import model_gguf
from ..presets import STRATEGIES, PresetRegistry
from ._fusion_flags import FusionFlags, takes_fusion_flags
from ._output import err_console
from ._plan import LOCAL_MAX_TOKENS, AskOptions, AskPlan, plan_ask
from ._view import AskView

__all__ = ["ask_command", "read_question", "register"]


def register(app: typer.Typer) -> None:
    """Add the ``ask`` command to a Typer app."""
    app.command("ask")(ask_command)


@takes_fusion_flags()
def ask_command(
    question: Annotated[
        str | None,
        typer.Argument(
            help="The question; '-' or nothing reads it from stdin.", show_default=False
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "--n", "-n", help="Samples per model (default 3 for one model, 1 each for a panel)."
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option("--strategy", "-s", help=f"How to combine: {' | '.join(STRATEGIES)}."),
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            "-e",
            help="OpenAI-compatible base URL; repeat for a panel.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="Model name per --endpoint (or one for all).", show_default=False
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="POLYFUSE_API_KEY",
            help="Bearer key for the endpoints (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    fusor: Annotated[
        str | None,
        typer.Option(
            "--fusor",
            help="The aggregator's model: a URL (with --fusor-model), a model name on the first "
            "--endpoint, or an endpoint name of --config.",
            show_default=False,
        ),
    ] = None,
    fusor_model: Annotated[
        str | None,
        typer.Option("--fusor-model", help="Model name at --fusor URL.", show_default=False),
    ] = None,
    gguf: Annotated[
        Path | None,
        typer.Option(
            "--gguf",
            help="A GGUF file for the embedded model (default SmolLM2-135M).",
            show_default=False,
        ),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            "--local-model",
            help=f"The embedded model: {' | '.join(LOCAL_MODELS)} (default "
            f"{DEFAULT_LOCAL_MODEL}; others are downloaded on first use).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A presets TOML file.", show_default=False)
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", "-p", help="The preset of --config to use.", show_default=False),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature.", show_default=False)
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Tokens per answer (embedded model: {LOCAL_MAX_TOKENS} unless set).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Base seed (candidate i gets seed + i).", show_default=False)
    ] = None,
    quorum: Annotated[
        int | None,
        typer.Option(help="Aggregate as soon as this many candidates are in.", show_default=False),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for candidates before aggregating.", show_default=False),
    ] = None,
    show_candidates: Annotated[
        bool,
        typer.Option(
            "--show-candidates", help="Print every candidate before the answer.", metavar=""
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print only the full FusionResult as JSON.", metavar="")
    ] = False,
    *,
    fusion_flags: FusionFlags,
) -> None:
    """Ask a question: sample N answers and fuse them into one (offline by default)."""
    text = read_question(question)
    plan = plan_ask(
        AskOptions(
            n=n,
            strategy=strategy,
            endpoints=list(endpoint or []),
            models=list(model or []),
            api_key=SecretStr(api_key) if api_key else None,
            fusor=fusor,
            fusor_model=fusor_model,
            gguf=gguf,
            local_model=local_model,
            config=config,
            preset=preset,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            quorum=quorum,
            deadline=deadline,
            fusion_flags=fusion_flags,
        )
    )
    asyncio.run(_run(plan, text, show_candidates=show_candidates, json_output=json_output))


def read_question(argument: str | None) -> str:
    """The question from the argument, or from stdin when it is absent or ``-``."""
    if argument is not None and argument != "-":
        text = argument
    elif sys.stdin is None or sys.stdin.isatty():
        raise InvalidRequestError('give a question: polyfuse ask "..." (or pipe one on stdin)')
    else:
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        raise InvalidRequestError("the question is empty")
    return text


async def _run(plan: AskPlan, question: str, *, show_candidates: bool, json_output: bool) -> None:
    err = err_console()
    # Download on first use, progress always on: off a terminal it is plain stderr lines, so a
    # piped first run that downloads a model for a minute is not silent.
    for name in plan.local_models:
        await asyncio.to_thread(model_gguf, name, show_progress=True)
    registry = PresetRegistry(plan.config)
    uses_local = any(spec.local for spec in plan.config.endpoints.values())
    starting = (
        err.status("Starting the embedded model…")
        if uses_local and err.is_terminal and not json_output
        else contextlib.nullcontext()
    )
    try:
        with starting:
            await asyncio.to_thread(registry.start)
        fusion = registry.fusion(plan.preset)
        if json_output:
            result = await fusion.arun(question, **plan.params)
            sys.stdout.write(result.model_dump_json(indent=2) + "\n")
            return
        with AskView(size=fusion.pool.size, show_candidates=show_candidates, err=err) as view:
            async for event in fusion.astream(question, **plan.params):
                view.handle(event)
    finally:
        await registry.aclose()
