"""``polyfuse distill``: fused answers as training data (the FusioN paper's second setting).

Prompts in (JSONL, CSV or Parquet), a teacher panel and a fusor, records out as JSONL — OpenAI
chat SFT, Alpaca, or preference pairs — each with its provenance: input hash, every teacher's
raw answer, the aggregation(s), judge scores, usage and cost. Runs are resumable and
crash-safe, on one machine (asyncio) or on a Ray cluster.

Example::

    from polyfuse.distill import DistillSpec, PriceTable, distill

    spec = DistillSpec.from_file("presets.toml", preset="panel", aggregations=("fuse", "best-of-n"))
    summary = distill("prompts.jsonl", "sft.jsonl", spec, prices=PriceTable.parse(["qwen=0.2/0.6"]))
    print(summary.stats.written, summary.stats.cost_usd)
"""

from __future__ import annotations

from .errors import DistillConfigError, DistillInputError, DistillOutputError, RecordError
from .formats import Answers, alpaca_record, build_record, preference_record, sft_record
from .inputs import InputFormat, InputProblem, InputSpec, PromptRow, input_hash, read_prompts
from .outcome import RowOutcome
from .panel import Admission, Panel
from .pricing import Cost, Price, PriceTable
from .processor import RowProcessor
from .progress import ProgressListener, RichProgress, RunStats
from .runner import DistillSummary, adistill, distill, errors_path_for
from .spec import DistillSpec, RecordFormat, parse_endpoint
from .stopping import StopSignal, stop_on_signals
from .store import JsonlAppender, JsonlRecords, ScanResult, read_jsonl, scan_jsonl

__all__ = [
    "Admission",
    "Answers",
    "Cost",
    "DistillConfigError",
    "DistillInputError",
    "DistillOutputError",
    "DistillSpec",
    "DistillSummary",
    "InputFormat",
    "InputProblem",
    "InputSpec",
    "JsonlAppender",
    "JsonlRecords",
    "Panel",
    "Price",
    "PriceTable",
    "ProgressListener",
    "PromptRow",
    "RecordError",
    "RecordFormat",
    "RichProgress",
    "RowOutcome",
    "RowProcessor",
    "RunStats",
    "ScanResult",
    "StopSignal",
    "adistill",
    "alpaca_record",
    "build_record",
    "distill",
    "errors_path_for",
    "input_hash",
    "parse_endpoint",
    "preference_record",
    "read_jsonl",
    "read_prompts",
    "scan_jsonl",
    "sft_record",
    "stop_on_signals",
]
