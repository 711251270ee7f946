"""Recorded candidate pools: per prompt, the gold answer and every model's answer, so that
aggregators can be evaluated again without sampling.

A pools file is JSONL, one prompt per line: the eval-row fields (``prompt``, ``gold``,
``reference``, ``task`` ...; see :mod:`polyfuse.eval.rows`) plus ``candidates``, a list of
``{"model": ..., "text": ..., "usage": {"prompt_tokens": .., "completion_tokens": ..},
"latency_s": ..}`` (usage and latency optional). Dollars are computed from the usage with the
eval's prices (``--price MODEL=IN/OUT``); a ``cost_usd`` field is kept when converting but not
read.

:func:`convert_zeroeval` turns ZeroEval's result files (one line per (question, model):
``{id, question, gold, model, output}``) into one. :func:`read_eval_generations` reads the
candidates a live ``polyfuse eval`` sampled (its ``generations.jsonl``), so that more strategies
can be evaluated later on the very same candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..distill.outcome import encode_line
from .errors import EvalDataError
from .jsonl_input import read_objects

__all__ = [
    "PoolCandidate",
    "PoolEntry",
    "convert_zeroeval",
    "pool_models",
    "read_eval_generations",
    "read_pools",
    "read_zeroeval",
    "select_panel",
    "write_pools",
]


@dataclass(frozen=True)
class PoolCandidate:
    """One recorded answer."""

    model: str
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    cost_usd: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PoolCandidate:
        """From a pools-file candidate object."""
        usage = data.get("usage") or {}
        return cls(
            model=str(data.get("model") or "unknown"),
            text=str(data.get("text") or data.get("content") or ""),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_s=data.get("latency_s"),
            cost_usd=data.get("cost_usd"),
        )

    def to_dict(self) -> dict[str, Any]:
        """As a pools-file candidate object."""
        out: dict[str, Any] = {"model": self.model, "text": self.text}
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            out["usage"] = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }
        if self.latency_s is not None:
            out["latency_s"] = self.latency_s
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
        return out


@dataclass
class PoolEntry:
    """One prompt of a pools file: its row fields and its candidates."""

    row: dict[str, Any]
    candidates: list[PoolCandidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """One pools-file line."""
        return {**self.row, "candidates": [c.to_dict() for c in self.candidates]}


def read_pools(path: str | Path) -> list[PoolEntry]:
    """A polyfuse pools file (``.jsonl`` or ``.jsonl.gz``)."""
    source = Path(path)
    entries: list[PoolEntry] = []
    for number, record in read_objects(source, what="pools file"):
        raw = record.get("candidates")
        if not isinstance(raw, list) or not raw:
            raise EvalDataError(
                f"{str(source)}:{number}: no 'candidates' list; a pools file holds per prompt "
                "the candidates [{model, text, usage}] (ZeroEval files: --pools-format zeroeval)"
            )
        row = {k: v for k, v in record.items() if k != "candidates"}
        entries.append(
            PoolEntry(row, [PoolCandidate.from_dict(c) for c in raw if isinstance(c, Mapping)])
        )
    return entries


def read_zeroeval(path: str | Path, *, task: str = "gsm8k") -> list[PoolEntry]:
    """ZeroEval result lines grouped by question id, in file order (models in first-seen order).

    The gold answer is graded as a number when it is one (GSM8K), else by MATH equivalence.
    """
    source = Path(path)
    by_id: dict[str, PoolEntry] = {}
    for number, record in read_objects(source, what="pools file"):
        try:
            qid, question, model = str(record["id"]), str(record["question"]), str(record["model"])
        except KeyError as exc:
            raise EvalDataError(
                f"{str(source)}:{number}: not a ZeroEval result line (no {exc.args[0]!r}); "
                "expected {id, question, gold, model, output}"
            ) from None
        entry = by_id.get(qid)
        if entry is None:
            entry = by_id[qid] = PoolEntry(
                {"id": qid, "prompt": question, "gold": str(record.get("gold", "")), "task": task}
            )
        entry.candidates.append(PoolCandidate(model=model, text=str(record.get("output") or "")))
    return list(by_id.values())


def read_eval_generations(path: str | Path) -> list[PoolEntry]:
    """The candidates of a live eval's generation records (``generations.jsonl``), per prompt.

    Each entry keeps the row's grading fields (gold, tests, task ...) and the prompt as it was
    asked (records made before polyfuse stored ``messages`` give the question as the one user
    message). Candidates that failed are left out; each keeps its endpoint's name as its model,
    with its usage and latency, so a replay counts the pool's cost as the live eval did.
    """
    source = Path(path)
    entries: list[PoolEntry] = []
    for number, record in read_objects(source, what="eval generations file"):
        raw, row = record.get("candidates"), record.get("row")
        if not isinstance(raw, list) or not isinstance(row, Mapping) or "strategies" not in record:
            raise EvalDataError(
                f"{str(source)}:{number}: not a polyfuse eval generation record "
                "(expected row, candidates and strategies)"
            )
        fields: dict[str, Any] = {k: v for k, v in row.items() if v is not None}
        messages = record.get("messages")
        fields["prompt"] = messages if isinstance(messages, list) else str(record["question"])
        candidates = [
            PoolCandidate.from_dict({**c, "model": c.get("name") or c.get("model")})
            for c in raw
            if isinstance(c, Mapping) and c.get("status") == "ok" and c.get("text")
        ]
        if candidates:
            entries.append(PoolEntry(fields, candidates))
    return entries


def pool_models(entries: Sequence[PoolEntry]) -> list[str]:
    """Every model in the pools, in first-seen order."""
    seen: dict[str, None] = {}
    for entry in entries:
        for candidate in entry.candidates:
            seen.setdefault(candidate.model, None)
    return list(seen)


def select_panel(entries: Sequence[PoolEntry], panel: Sequence[str]) -> list[PoolEntry]:
    """The entries with only the panel's candidates, in panel order (one per model).

    Raises :class:`EvalDataError` naming the models the pools do not hold.
    """
    known = set(pool_models(entries))
    missing = [m for m in panel if m not in known]
    if missing:
        raise EvalDataError(
            f"the pools hold no answers from {', '.join(missing)}; models there: "
            f"{', '.join(sorted(known))}"
        )
    out: list[PoolEntry] = []
    for entry in entries:
        by_model = {c.model: c for c in reversed(entry.candidates)}
        chosen = [by_model[m] for m in panel if m in by_model]
        if chosen:
            out.append(PoolEntry(entry.row, chosen))
    return out


def write_pools(entries: Sequence[PoolEntry], path: str | Path) -> int:
    """Write a polyfuse pools file; return the number of prompts."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(encode_line(entry.to_dict()) + "\n")
    return len(entries)


def convert_zeroeval(source: str | Path, target: str | Path, *, task: str = "gsm8k") -> int:
    """Convert ZeroEval result lines into a polyfuse pools file; return the number of prompts."""
    return write_pools(read_zeroeval(source, task=task), target)
