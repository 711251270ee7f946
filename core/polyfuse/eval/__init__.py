"""``polyfuse eval``: does fusion beat one sample, Best-of-N and voting on *your* task?

The candidate pool is drawn once per prompt (or read from a recorded pool) and every strategy
— ``single``, ``best-of-n``, ``vote``, ``usc``, ``fuse``, ``moa`` — runs over that same pool.
Answers are graded (exact, number, MATH equivalence, choice, sandboxed code pass@1) or judged
by an LLM (pairwise against a reference or head to head, both position orders, explicit ties;
rubric scores), then reported with paired bootstrap CIs, cost next to quality, and a
recommendation per task. Needs ``pip install ".[eval]"`` (in a polyfuse checkout).

Example::

    from polyfuse.eval import evaluate

    result = evaluate("gsm_pools.jsonl.gz", "out/", replay=True, strategies="single,vote",
                      panel=["gpt-4o-mini-2024-07-18", "gemma-2-9b-it", "claude-3-haiku-20240307"])
    print(result.analysis.tasks[0].recommendation)
    # out/report.html, out/report.md, out/judgments.jsonl, out/routing.jsonl
"""

from __future__ import annotations

from .analysis import Ceiling, EvalAnalysis, JudgeStats, StrategyCost, TaskResult, analyse
from .datasets import DATASETS, load_dataset, write_eval_file
from .errors import EvalConfigError, EvalDataError
from .graders import GRADERS, Grade, answer_key, grade_answer, grader_for
from .judges import (
    JudgeReply,
    PairwiseJudge,
    RubricJudge,
    combine_orders,
    parse_pairwise,
    parse_rubric,
)
from .judging import JudgingPlan, judge_records
from .mathequiv import math_equal, normalise_latex
from .pools import (
    PoolCandidate,
    PoolEntry,
    convert_zeroeval,
    read_eval_generations,
    read_pools,
    read_zeroeval,
    select_panel,
    write_pools,
)
from .processor import EVAL_STRATEGIES, EvalProcessor, EvalSetup
from .report import ReportContext, render_html, render_markdown
from .routing_log import routing_records
from .rows import EvalRow, read_eval_rows
from .runner import EvalResult, aevaluate, evaluate, parse_strategies
from .sandbox import SandboxLimits, SandboxResult, run_python
from .stats import Comparison, Estimate, FrontierPoint, bootstrap, frontier
from .sweep import GradedPool, PanelResult, grade_pool, panel_sweep

__all__ = [
    "DATASETS",
    "EVAL_STRATEGIES",
    "GRADERS",
    "Ceiling",
    "Comparison",
    "Estimate",
    "EvalAnalysis",
    "EvalConfigError",
    "EvalDataError",
    "EvalProcessor",
    "EvalResult",
    "EvalRow",
    "EvalSetup",
    "FrontierPoint",
    "Grade",
    "GradedPool",
    "JudgeReply",
    "JudgeStats",
    "JudgingPlan",
    "PairwiseJudge",
    "PanelResult",
    "PoolCandidate",
    "PoolEntry",
    "ReportContext",
    "RubricJudge",
    "SandboxLimits",
    "SandboxResult",
    "StrategyCost",
    "TaskResult",
    "aevaluate",
    "analyse",
    "answer_key",
    "bootstrap",
    "combine_orders",
    "convert_zeroeval",
    "evaluate",
    "frontier",
    "grade_answer",
    "grade_pool",
    "grader_for",
    "judge_records",
    "load_dataset",
    "math_equal",
    "normalise_latex",
    "panel_sweep",
    "parse_pairwise",
    "parse_rubric",
    "parse_strategies",
    "read_eval_generations",
    "read_eval_rows",
    "read_pools",
    "read_zeroeval",
    "render_html",
    "render_markdown",
    "routing_records",
    "run_python",
    "select_panel",
    "write_eval_file",
    "write_pools",
]
