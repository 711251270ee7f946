"""``polyfuse route train|eval``: learn routers from logs, and measure them on held-out logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InvalidRequestError
from ._output import err_console

__all__ = ["register", "route_app"]

route_app = typer.Typer(
    name="route",
    help="Query-level fusion: train routers from multi-model logs and evaluate them.",
    no_args_is_help=True,
)

_KINDS = ("knn", "mlp", "mf")

LogsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Routing logs (JSONL RoutingRecords).", show_default=False),
]
LlmrouterOpt = Annotated[
    Path | None,
    typer.Option(
        "--llmrouter",
        help="A folder with LLMRouter's files (train.json, test.json, default_query_*.jsonl, "
        "default_llm.json) instead of JSONL logs.",
        show_default=False,
    ),
]
PricesOpt = Annotated[
    Path | None,
    typer.Option(
        help="Prices JSON ({model: {input_price, output_price}}, $/M tokens).", show_default=False
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Embedding cache (SQLite). [default: ~/.cache/polyfuse/embeddings.sqlite]",
        show_default=False,
    ),
]
EmbedUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="An OpenAI-compatible /v1 root for embeddings (default: offline wordllama).",
        show_default=False,
    ),
]
EmbedModelOpt = Annotated[
    str | None, typer.Option(help="The embedding model at --embed-url.", show_default=False)
]
EmbedKeyOpt = Annotated[
    str | None,
    typer.Option(
        envvar="POLYFUSE_EMBED_API_KEY",
        help="Bearer key for --embed-url (prefer the environment variable).",
        show_default=False,
    ),
]
OutputTokensOpt = Annotated[
    int,
    typer.Option(
        help="Output tokens assumed per answer when a log has no token counts (cost estimate)."
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``route`` command group to a Typer app."""
    app.add_typer(route_app, name="route")


def require_routing_extra() -> None:
    """A clear error when numpy or wordllama (the ``routing`` extra) is missing."""
    import importlib.util

    missing = [m for m in ("numpy", "wordllama") if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidRequestError(
            f"{' and '.join(missing)} not installed: pip install '.[routing]' in a polyfuse checkout"
        )


@route_app.callback()
def _route_group() -> None:
    require_routing_extra()


@contextmanager
def _progress() -> Generator[Callable[[str, int | None], Callable[[int], None]], None, None]:
    console = err_console()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:

        def step(description: str, total: int | None) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield step


def _load(
    logs: list[Path] | None,
    llmrouter: Path | None,
    split: str,
    prices: Path | None,
    output_tokens: int,
    step: Callable[[str, int | None], Callable[[int], None]],
) -> tuple[Any, Any, bool]:
    from ..routing.sources import load_logs
    from ..routing.table import RoutingTable

    total = None
    if llmrouter is not None and (llmrouter / f"{split}.json").exists():
        total = len(json.loads((llmrouter / f"{split}.json").read_text(encoding="utf-8")))
    records, price_map = load_logs(
        logs or [],
        llmrouter=llmrouter,
        split=split,
        prices=prices,
        output_tokens=output_tokens,
        on_progress=step(f"loading {split}", total) if total else None,
    )
    estimated = any(r.cost_estimated for r in records)
    return RoutingTable.from_records(records), price_map, estimated


def _splittable(table: Any, share: float) -> bool:
    """Whether :func:`~polyfuse.routing.calibrate.split_validation` can hold out at least 10
    queries (fewer are too few to choose anything on)."""
    from ..routing.calibrate import split_validation

    try:
        _, held = split_validation(table, share)
    except InvalidRequestError:
        return False  # the caller says so and trains without calibration
    return len(held) >= 10


def _print_trained(table: Any, rows: list[tuple[str, Any, float, Any, Path]], priced: bool) -> None:
    """The training summary: times, chosen settings, and what validation showed."""
    summary = Table(title=f"routers trained on {len(table)} queries × {len(table.models)} models")
    for column in ("router", "train s", "calibration s", "settings", "tolerance ε", "file"):
        summary.add_column(column)
    for name, router, seconds, calibration, path in rows:
        settings = ", ".join(f"{s}={getattr(router, s):g}" for s in router.prediction_grid)
        summary.add_row(
            name,
            f"{seconds:.2f}",
            f"{calibration.seconds:.2f}" if calibration else "-",
            settings,
            "-" if router.tolerance is None else f"{router.tolerance:g}",
            escape(str(path)),
        )
    console = err_console()
    console.print(summary)
    for name, router, _, calibration, _ in rows:
        if calibration is None:
            continue
        val = calibration.validation
        single = val.get("best_single")
        line = (
            f"{name}: validation on {val['queries']} held-out training queries, mean scenario "
            f"reward {val['mean_reward']:.4f}"
        )
        if single is not None:
            curve = {c["tolerance"]: c for c in val["tolerance_curve"]}
            if router.tolerance is None:
                line += (
                    f"; no tolerance matches the best single model ({escape(single['model'])}, "
                    f"{single['score']:.3f}): cheapest-within-ε is off"
                )
            else:
                point = curve[router.tolerance]
                line += (
                    f"; cheapest within ε={router.tolerance:g}: {point['score']:.3f} at "
                    f"{point['cost_share']:.0%} of the cost of the best single model "
                    f"({escape(single['model'])}, {single['score']:.3f})"
                )
        console.print(line)
    if not priced:
        console.print(
            "[yellow]no prices:[/] the routers serve performance-first only (give --prices)"
        )


@route_app.command("train")
def train_command(
    logs: LogsArg = None,
    llmrouter: LlmrouterOpt = None,
    split: Annotated[str, typer.Option(help="The LLMRouter split to train on.")] = "train",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the router files.")] = Path(
        "routers"
    ),
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Routers to train: knn, mlp, mf (repeat; default: all three)."),
    ] = None,
    prices: PricesOpt = None,
    output_tokens: OutputTokensOpt = 256,
    cache: CacheOpt = None,
    embed_url: EmbedUrlOpt = None,
    embed_model: EmbedModelOpt = None,
    embed_api_key: EmbedKeyOpt = None,
    k: Annotated[int, typer.Option(help="kNN: neighbours.")] = 100,
    temperature: Annotated[float, typer.Option(help="kNN: similarity temperature.")] = 0.05,
    epochs: Annotated[int, typer.Option(help="MLP and MF: passes over the log.")] = 12,
    rank: Annotated[int, typer.Option(help="MF: latent factors per query and model.")] = 32,
    prior_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the per-task prior in every router's estimate (with --validation 0; "
            "else chosen on the validation split)."
        ),
    ] = 0.5,
    validation: Annotated[
        float,
        typer.Option(
            help="Share of each task's training queries held out to choose the prediction "
            "settings and the tolerance ε (0: no calibration; then the routers use "
            "--prior-weight and --temperature as given)."
        ),
    ] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the validation split.")] = 0,
) -> None:
    """Train routers from routing logs; write one versioned .npz file per router.

    With a validation split (default) each router is first trained on the rest of the log; its
    task-prior weight (and the kNN temperature) and the tolerance ε of cheapest-within-ε
    selection are chosen on the held-out part; then it is trained on the whole log.
    """
    from ..routing.calibrate import Calibration, calibrate_router
    from ..routing.routers import KnnRouter, MfRouter, MlpRouter, Router
    from ..routing.sources import embed_with_cache, make_embedder

    kinds = kind or list(_KINDS)
    bad = [x for x in kinds if x not in _KINDS]
    if bad:
        raise InvalidRequestError(
            f"unknown router kind {bad[0]!r}; choose from {', '.join(_KINDS)}"
        )
    if not 0 <= validation < 1:
        raise InvalidRequestError(f"--validation must be in [0, 1) (got {validation})")
    embedder = make_embedder(embed_url, embed_model, api_key=embed_api_key)
    rows: list[tuple[str, Router, float, Calibration | None, Path]] = []
    with _progress() as step:
        table, price_map, _ = _load(logs, llmrouter, split, prices, output_tokens, step)
        x = embed_with_cache(embedder, table.queries, cache, step("embedding", len(table)))
        for name in kinds:

            def make(name: str = name, label: str = "training") -> Router:
                if name == "knn":
                    return KnnRouter(k=k, temperature=temperature, prior_weight=prior_weight)
                neural = (
                    MlpRouter(epochs=epochs, prior_weight=prior_weight)
                    if name == "mlp"
                    else MfRouter(rank, epochs, prior_weight=prior_weight)
                )
                neural.on_epoch = step(f"{label} {name} (epochs)", epochs)
                return neural

            calibration = None
            if validation > 0 and not _splittable(table, validation):
                err_console().print(
                    f"[yellow]note:[/] {len(table)} queries are too few to hold out "
                    f"{validation:.0%} of each task: {name} is trained without calibration"
                )
            elif validation > 0:
                calibration = calibrate_router(
                    lambda name=name: make(name, "calibrating"),
                    table,
                    x,
                    embedder_id=embedder.id,
                    prices=price_map,
                    output_tokens=output_tokens,
                    share=validation,
                    seed=seed,
                )
            started = time.perf_counter()
            router = make()
            if calibration is not None:
                for setting, value in calibration.params.items():
                    setattr(router, setting, value)
            router.fit(
                table, x, embedder_id=embedder.id, prices=price_map, output_tokens=output_tokens
            )
            seconds = time.perf_counter() - started
            if calibration is not None:
                router.calibration = calibration.as_header()
            path = router.save(out / f"router-{name}.npz")
            rows.append((name, router, seconds, calibration, path))
    _print_trained(table, rows, bool(price_map))


@route_app.command("eval")
def eval_command(
    routers: Annotated[list[Path], typer.Argument(help="Router files (.npz).")],
    test_logs: Annotated[
        list[Path] | None, typer.Option("--test", help="Held-out routing logs (JSONL).")
    ] = None,
    train_logs: Annotated[
        list[Path] | None,
        typer.Option("--train", help="The training logs (they pick the best single model)."),
    ] = None,
    llmrouter: LlmrouterOpt = None,
    prices: PricesOpt = None,
    output_tokens: OutputTokensOpt = 256,
    cache: CacheOpt = None,
    embed_url: EmbedUrlOpt = None,
    embed_model: EmbedModelOpt = None,
    embed_api_key: EmbedKeyOpt = None,
    infer_tasks: Annotated[
        bool,
        typer.Option(help="Hide each test query's task from the router (it infers the task)."),
    ] = False,
    budget_share: Annotated[
        float | None,
        typer.Option(
            help="Also report the router restricted, per query, to models costing at most this "
            "share of the best single model (e.g. 0.5).",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a PNG: score vs cost per scenario.", show_default=False),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the tables as Markdown.", show_default=False)
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.", show_default=False)
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="ε of the 'cheapest within ε' row (default: each router's calibrated one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Evaluate routers on held-out logs: score and cost per scenario vs best single model,
    random and oracle, and the score per task."""
    from ..routing.evaluate import RouterSpeed, evaluate_router, measure_speed
    from ..routing.routers import load_router
    from ..routing.selector import embedder_for
    from ..routing.sources import embed_with_cache, make_embedder

    if llmrouter is None and not (test_logs and train_logs):
        raise InvalidRequestError("give --llmrouter FOLDER, or both --train and --test logs")
    loaded = [(path, load_router(path)) for path in routers]
    results: dict[str, Any] = {}
    speeds: dict[str, RouterSpeed] = {}
    with _progress() as step:
        train, _, _ = _load(train_logs, llmrouter, "train", prices, output_tokens, step)
        test, _, estimated = _load(test_logs, llmrouter, "test", prices, output_tokens, step)
        for path, router in loaded:
            custom = (
                make_embedder(embed_url, embed_model, api_key=embed_api_key) if embed_url else None
            )
            embedder = embedder_for(router, custom)
            x = embed_with_cache(embedder, test.queries, cache, step("embedding test", len(test)))
            reports = evaluate_router(
                router,
                train,
                test,
                x,
                tasks_known=not infer_tasks,
                budget_share=budget_share,
                tolerance=tolerance,
            )
            results[path.stem] = reports
            tasks = test.tasks if not infer_tasks else [None] * len(test)
            speeds[path.stem] = measure_speed(path, test.queries, tasks, embedder=embedder)
    from ..routing.report import (
        render_markdown,
        render_plot,
        render_speed,
        render_speed_markdown,
        render_tables,
        results_json,
        speed_json,
    )

    note = (
        "Costs are estimates (the logs have no token counts): each query's tokens (Llama-2 "
        f"tokenizer) at the model's input price plus {output_tokens} output tokens at its "
        "output price."
        if estimated
        else ""
    )
    render_tables(err_console(), results, tasks_known=not infer_tasks, note=note)
    render_speed(err_console(), speeds)
    if markdown is not None:
        text = render_markdown(results, tasks_known=not infer_tasks, note=note)
        text += "\nSpeed:\n\n" + render_speed_markdown(speeds)
        markdown.write_text(text, encoding="utf-8")
    if plot is not None:
        render_plot(results, plot)
    if json_out is not None:
        data = {"routers": results_json(results), "speed": speed_json(speeds)}
        json_out.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _tolerance(raw: str | None) -> float | Literal["calibrated"] | None:
    if raw is None or raw == "calibrated":
        return raw
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequestError(
            f"--tolerance must be a number or 'calibrated' (got {raw!r})"
        ) from None


@route_app.command("show")
def show_command(
    router_path: Annotated[Path, typer.Argument(help="A router file (.npz).")],
    query: Annotated[
        str | None,
        typer.Argument(help="A query to route (omit to describe the router).", show_default=False),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="The query's task, when known.", show_default=False)
    ] = None,
    scenario: Annotated[
        str, typer.Option(help="performance-first, balance or cost-first.")
    ] = "performance-first",
    k: Annotated[int, typer.Option(help="Models to choose.")] = 1,
    budget_usd: Annotated[
        float | None,
        typer.Option(help="The most the chosen models may cost per query.", show_default=False),
    ] = None,
    tolerance: Annotated[
        str | None,
        typer.Option(
            help="Prefer the cheapest model within this much of the best score: a number, or "
            "'calibrated' (the router's validated ε).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Describe a router file, or show how it routes one query (every model's predicted score,
    estimated cost and scenario score)."""
    from ..routing.routers import load_router
    from ..routing.selector import CostAwareSelector

    router = load_router(router_path)
    console = err_console()
    if query is None:
        console.print(
            f"{escape(router.kind)} router, {len(router.models)} models, "
            f"{len(router.tasks)} tasks, embedder {escape(router.embedder_id)}, trained on "
            f"{router.trained.get('queries', '?')} queries; output tokens assumed: "
            f"{router.output_tokens}"
        )
        if router.calibration:
            params = ", ".join(f"{k}={v:g}" for k, v in router.calibration["params"].items())
            console.print(
                f"calibrated on {router.calibration['validation']['queries']} held-out training "
                f"queries: {escape(params)}; tolerance ε: {router.tolerance}"
            )
        table = Table()
        for column in ("model", "mean score in the log", "$/M in", "$/M out"):
            table.add_column(column)
        for j, model in enumerate(router.models):
            price = router.prices.get(model)
            table.add_row(
                escape(model),
                f"{router.global_prior[j]:.3f}",
                f"{price.input_per_m:g}" if price else "-",
                f"{price.output_per_m:g}" if price else "-",
            )
        console.print(table)
        return
    selector = CostAwareSelector(
        router, scenario, k=k, budget_usd=budget_usd, tolerance=_tolerance(tolerance)
    )
    selector.route(query, task)  # warm-up: loads the embedder and tokenizer
    decision = selector.route(query, task)
    table = Table(
        title=f"{decision.scenario}, task {escape(decision.task or 'unknown')}, "
        f"{decision.latency_ms:.1f} ms"
    )
    for column in ("rank", "model", "predicted score", "est. cost $", "scenario score", "chosen"):
        table.add_column(column)
    for rank, model in enumerate(decision.ranking, 1):
        cost = decision.cost_usd[model]
        table.add_row(
            str(rank),
            escape(model),
            f"{decision.performance[model]:.3f}",
            f"{cost:.6f}" if cost is not None else "-",
            f"{decision.scores[model]:.3f}",
            "yes" if model in decision.models else "",
        )
    console.print(table)
    for note in decision.notes:
        console.print(f"note: {escape(note)}")
    typer.echo(" ".join(decision.models))
