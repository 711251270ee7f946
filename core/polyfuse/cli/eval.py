"""``polyfuse eval``: does fusion beat one sample, Best-of-N and voting on your task?"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..distill import PriceTable, RichProgress
from ..errors import InvalidRequestError, PolyfuseError
from ._fusion_flags import FusionFlags, takes_fusion_flags
from ._output import print_error
from ._stoppable import EXIT_STOPPED, run_stoppable

if TYPE_CHECKING:  # the eval package needs numpy (the [eval] extra): imported when run
    from ..eval import EvalResult
    from ..eval.adaptive_curve import CurvePoint
    from ..eval.analysis import AdaptiveStats, TaskResult

__all__ = ["eval_command", "register"]

_JUDGE_MODES = ("auto", "reference", "head-to-head", "rubric")
_POOLS_FORMATS = ("auto", "polyfuse", "zeroeval", "eval")


def _prices(entries: list[str], path: Path | None) -> PriceTable | None:
    table = PriceTable.from_file(path) if path is not None else PriceTable({})
    if entries:
        table = table.merged(PriceTable.parse(entries))
    return table if table else None


class _JudgingBar:
    """A counter of judgments written (the total is not known up front)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]judging[/] {task.completed} judgment batches written"),
            console=console,
            transient=True,
        )
        self.task: Any = None

    def tick(self) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("judging", total=None)
        self.progress.advance(self.task)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


@takes_fusion_flags(without=("adaptive", "hedge_fallback"))
def eval_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Eval rows (.jsonl/.csv/.parquet), a public set with --dataset, "
            "or with --replay a pools file or an earlier eval's output directory."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory (a rerun resumes).")
    ],
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma list of single,best-of-n,vote,usc,fuse,moa and adaptive-vote, "
            "adaptive-fuse, adaptive-usc, adaptive-best-of-n."
        ),
    ] = "single,vote",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Presets TOML file.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Preset naming the pool and the fusor.")
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="Judge endpoint name (default: the preset's fusor).")
    ] = None,
    judge_mode: Annotated[
        str, typer.Option(help="auto | reference | head-to-head | rubric")
    ] = "auto",
    baseline: Annotated[
        str, typer.Option(help="Strategy the others meet head to head.")
    ] = "single",
    dataset: Annotated[
        str | None,
        typer.Option(help="gsm8k | math500 | mbpp | humaneval | mt-bench | arena-hard"),
    ] = None,
    replay: Annotated[
        bool, typer.Option(help="DATA is a recorded pools file: no sampling.")
    ] = False,
    pools_format: Annotated[
        str, typer.Option(help="auto | polyfuse | zeroeval | eval (a live eval's generations)")
    ] = "auto",
    panel: Annotated[
        str | None, typer.Option(help="Replay: comma list of the pools' models to use, in order.")
    ] = None,
    sweep: Annotated[
        bool, typer.Option(help="Replay: majority vote over every panel size too.")
    ] = False,
    grader: Annotated[
        str | None, typer.Option(help="Force a grader: exact | number | math | choice | code")
    ] = None,
    price: Annotated[
        list[str] | None, typer.Option(help="NAME=INPUT/OUTPUT USD per 1M tokens (repeat).")
    ] = None,
    prices: Annotated[Path | None, typer.Option(help="Prices file (TOML or JSON).")] = None,
    temperature: Annotated[float | None, typer.Option(min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    prompt_field: Annotated[
        str | None, typer.Option(help="Field with the prompt (default: messages, prompt).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many new prompts.")] = None,
    retry_errors: Annotated[
        bool, typer.Option(help="Retry prompts that got no candidate before.")
    ] = False,
    judge_candidates: Annotated[
        bool, typer.Option(help="Rubric-score candidates of judged rows (routing log).")
    ] = True,
    judge_max_tokens: Annotated[
        int, typer.Option(min=1, help="The LLM judge's reply budget in tokens.")
    ] = 512,
    code_timeout: Annotated[
        float, typer.Option(min=0.1, help="Code grader: seconds per program.")
    ] = 10.0,
    code_memory_mb: Annotated[
        int, typer.Option(min=16, help="Code grader: memory limit in MiB.")
    ] = 1024,
    engine: Annotated[str, typer.Option(help="asyncio | ray")] = "asyncio",
    ray_actors: Annotated[int, typer.Option(min=1, help="Ray engine: actors.")] = 2,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    max_rows_in_flight: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Prompts in flight at once (default: enough to fill the endpoints); fewer "
            "finish each prompt sooner on a slow backend.",
            show_default=False,
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    fsync: Annotated[bool, typer.Option(help="fsync every batch of lines.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    order_seed: Annotated[
        int,
        typer.Option(
            help="Replay: the seed of the adaptive strategies' random sampling order per prompt.",
            rich_help_panel="Adaptive sampling",
        ),
    ] = 0,
    adaptive_curve: Annotated[
        bool,
        typer.Option(
            help="Replay: also report adaptive stopping at several confidence thresholds "
            "against the full vote (accuracy vs candidate calls).",
            rich_help_panel="Adaptive sampling",
        ),
    ] = False,
    curve_orders: Annotated[
        int,
        typer.Option(
            min=1,
            help="--adaptive-curve: random sampling orders per prompt.",
            rich_help_panel="Adaptive sampling",
        ),
    ] = 20,
    *,
    fusion_flags: FusionFlags,
) -> None:
    """Compare strategies on the same candidate pools: grade or judge, report with CIs.

    Writes report.html, report.md, judgments.jsonl, routing.jsonl and summary.json into
    --output. Resumable: rerun the same command after a crash. Ctrl-C once starts no new
    prompt and reports those in flight when they finish; twice stops at once.

    adaptive-vote, adaptive-fuse, adaptive-usc and adaptive-best-of-n measure adaptive sampling
    and the consensus shortcut on the same pool (--adaptive-* flags set the stopping rule).
    """
    try:
        from ..eval import aevaluate
        from ..eval.sandbox import SandboxLimits
    except ImportError as exc:  # numpy missing: the [eval] extra is not installed
        print_error(exc)
        raise typer.Exit(2) from None

    console = Console(stderr=True)
    for flag, value, allowed in (
        ("judge-mode", judge_mode, _JUDGE_MODES),
        ("pools-format", pools_format, _POOLS_FORMATS),
        ("engine", engine, ("asyncio", "ray")),
    ):
        if value not in allowed:
            raise typer.BadParameter(f"--{flag} must be one of {', '.join(allowed)}")
    if (config is None) != (preset is None):
        raise typer.BadParameter("--config and --preset go together")
    params = {
        k: v
        for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
        if v is not None
    }
    bar = _JudgingBar(console) if progress else None
    limits = SandboxLimits(
        timeout_s=code_timeout, cpu_s=max(1, int(code_timeout)), memory_mb=code_memory_mb
    )
    try:
        # Ctrl-C once: no new prompt starts, those in flight finish, are judged and reported
        result, stopped = run_stoppable(
            lambda stop: aevaluate(
                data,
                output,
                strategies=strategies,
                config=config,
                preset=preset,
                judge=judge,
                judge_mode=judge_mode,  # type: ignore[arg-type]
                baseline=baseline,
                dataset=dataset,
                replay=replay,
                pools_format=pools_format,  # type: ignore[arg-type]
                panel=[p.strip() for p in panel.split(",") if p.strip()] if panel else None,
                sweep=sweep,
                grader=grader,
                prices=_prices(list(price or []), prices),
                params=params,
                prompt_field=prompt_field,
                limit=limit,
                retry_errors=retry_errors,
                engine=engine,  # type: ignore[arg-type]
                ray_actors=ray_actors,
                ray_address=ray_address,
                progress=RichProgress(console, description="eval") if progress else None,
                on_judgment=bar.tick if bar is not None else None,
                judge_candidates=judge_candidates,
                judge_max_tokens=judge_max_tokens,
                code_limits=limits,
                resamples=resamples,
                fsync=fsync,
                title=title,
                fusion=fusion_flags.overrides(),
                order_seed=order_seed,
                adaptive_curve=adaptive_curve,
                curve_orders=curve_orders,
                command="polyfuse eval " + shlex.join(sys.argv[2:])
                if len(sys.argv) > 2 and sys.argv[1] == "eval"
                else None,
                max_rows_in_flight=max_rows_in_flight,
                stop=stop,
            ),
            graceful=engine == "asyncio",
            console=console,
        )
    except InvalidRequestError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    except PolyfuseError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    finally:
        if bar is not None:
            bar.stop()
    _print_result(result, stopped)
    if stopped is not None and result.generation.summary.stats.remaining:
        raise typer.Exit(EXIT_STOPPED)


def _print_result(result: EvalResult, stopped: str | None) -> None:
    """What the eval made, on stdout: counts, notes, each task's line, where the files are."""
    out = Console()
    summary = result.generation.summary
    out.print(f"[bold]polyfuse eval[/] {result.analysis.prompts} prompts", highlight=False)
    if summary.already_done:
        out.print(f"  resumed: {summary.already_done} prompt(s) were already generated")
    left = summary.stats.remaining
    if stopped is not None and left > 0:
        out.print(
            f"  [yellow]stopped ({escape(stopped)}): {left} prompt(s) not started[/]; "
            "rerun the same command to continue",
            highlight=False,
        )
    if result.analysis.failed_rows:
        out.print(
            f"  [yellow]{result.analysis.failed_rows} prompt(s) got no usable candidate[/] "
            f"→ {escape(str(summary.errors))} (retry: --retry-errors)"
        )
    if summary.problem_count:
        out.print(f"  [yellow]{summary.problem_count} bad input line(s) skipped[/]")
    judge_stats = result.analysis.judge
    if judge_stats.replies:
        out.print(f"  judge replies: {judge_stats.replies}, unparseable: {judge_stats.unparseable}")
    for note in result.notes:
        out.print(f"  [yellow]{escape(note)}[/]", soft_wrap=True, highlight=False)
    for line in _result_lines(result):
        out.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    out.print(f"  report: {escape(str(result.report_html))}", highlight=False, soft_wrap=True)
    out.print(
        f"  routing log: {result.routing_records} records → {escape(str(result.routing_log))}"
        + (
            f" ({result.routing_skipped} candidates without a score)"
            if result.routing_skipped
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )


def _result_lines(result: EvalResult) -> list[str]:
    """Per task: how the adaptive strategies sampled, then the recommendation; then the
    adaptive curve's points."""
    lines: list[str] = []
    for task in result.analysis.tasks:
        lines += [_adaptive_line(task, name, stats) for name, stats in task.adaptive.items()]
        lines.append(task.recommendation)
    lines += [_curve_line(point) for point in result.adaptive_curve or []]
    return lines


def _adaptive_line(task: TaskResult, name: str, stats: AdaptiveStats) -> str:
    """``adaptive-vote: 4.31 of 8 samples (46.1% fewer candidate calls); vs vote -0.1 pts``."""
    line = (
        f"{name}: {stats.samples:.2f} of {stats.max_samples:.2f} samples "
        f"({100 * stats.saved_share:.1f}% fewer candidate calls)"
    )
    from ..eval.analysis import signed_points
    from ..eval.processor import base_strategy

    full = base_strategy(name)
    diff = task.comparison(name, full) if full in task.estimates else None
    if diff is not None:
        line += (
            f"; vs {full} {signed_points(diff.diff.mean)} pts "
            f"(95% CI {signed_points(diff.diff.low)} to {signed_points(diff.diff.high)})"
        )
    return line


def _curve_line(point: CurvePoint) -> str:
    """``adaptive curve, confidence 0.8: 4.24 of 8.00 calls (47.0% fewer), -0.1 pts (...)``."""
    line = (
        f"adaptive curve, {point.label}: {point.calls:.2f} of {point.max_calls:.2f} calls "
        f"({100 * point.saved_share:.1f}% fewer), accuracy {100 * point.accuracy.mean:.1f}%"
    )
    if point.delta is not None:
        from ..eval.analysis import signed_points

        line += (
            f", {signed_points(point.delta.mean)} pts vs the full vote "
            f"(95% CI {signed_points(point.delta.low)} to {signed_points(point.delta.high)})"
        )
    return line


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to a Typer app."""
    app.command("eval", help=eval_command.__doc__, no_args_is_help=True)(eval_command)
