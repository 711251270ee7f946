"""Routing logs from an eval: one :class:`~polyfuse.routing.RoutingRecord` per (prompt,
candidate) — query, task, model, response, score, tokens, cost, latency — so routers can be
trained from your own evaluations.

The score is the candidate's verifiable grade; on judged tasks it is its rubric score mapped to
[0, 1] (``(rating - 1) / 9``). A candidate with neither is left out and counted, never given an
invented score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..routing import RoutingRecord, write_routing_log

__all__ = ["routing_records", "write_eval_routing_log"]


def routing_records(
    records: Sequence[Mapping[str, Any]], judgments: Iterable[Mapping[str, Any]]
) -> tuple[list[RoutingRecord], int]:
    """The routing records of an eval, and how many candidates had no score."""
    grades: dict[tuple[str, str], float] = {}
    rubric: dict[tuple[str, str], float] = {}
    for j in judgments:
        subject = str(j.get("subject"))
        if not subject.startswith("candidate:"):
            continue
        key = (str(j.get("input_hash")), subject)
        if j.get("kind") == "grade" and j.get("score") is not None:
            grades[key] = float(j["score"])
        elif j.get("kind") == "rubric" and j.get("score") is not None:
            rubric[key] = (float(j["score"]) - 1.0) / 9.0
    out: list[RoutingRecord] = []
    skipped = 0
    for record in records:
        ih = str(record["input_hash"])
        row = record.get("row") or {}
        for cand in record.get("candidates") or []:
            if cand.get("status") != "ok":
                continue
            key = (ih, f"candidate:{cand['index']}")
            judge_score = rubric.get(key)
            score = grades.get(key, judge_score)
            if score is None:
                skipped += 1
                continue
            usage = cand.get("usage") or {}
            known_usage = not usage.get("calls_without_usage")
            out.append(
                RoutingRecord(
                    query_id=str(row.get("id") or ih[:12]),
                    query=str(record.get("question") or "") or "(empty prompt)",
                    task=row.get("task"),
                    model=str(cand.get("name") or cand.get("model") or "unknown"),
                    response=cand.get("text"),
                    score=min(1.0, max(0.0, score)),
                    judge_score=judge_score,
                    prompt_tokens=usage.get("prompt_tokens") if known_usage else None,
                    completion_tokens=usage.get("completion_tokens") if known_usage else None,
                    cost_usd=cand.get("cost_usd"),
                    latency_s=cand.get("latency_s"),
                    source="polyfuse eval",
                )
            )
    return out, skipped


def write_eval_routing_log(
    path: Path, records: Sequence[Mapping[str, Any]], judgments: Iterable[Mapping[str, Any]]
) -> tuple[int, int]:
    """Write (replace) the routing log; return (records written, candidates without a score)."""
    built, skipped = routing_records(records, judgments)
    written = write_routing_log(path, built, append=False)
    return written, skipped
