"""The routing-log schema: one record per (query, model) — what a model answered and how well.

Routers and thought templates learn from these records; ``polyfuse eval`` writes them for every
model it samples, and loaders turn other logs (LLMRouter's files, recorded fusions) into them.
A routing log on disk is JSON Lines, one :class:`RoutingRecord` per line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._validation import describe_validation_error
from ..errors import InvalidRequestError

__all__ = ["ROUTING_LOG_VERSION", "RoutingRecord", "read_routing_log", "write_routing_log"]

ROUTING_LOG_VERSION = 1
"""The version of the record layout; written into every record as ``schema_version``."""


class RoutingRecord(BaseModel):
    """One model's answer to one query, with its score and what it cost.

    ``score`` is the task metric in [0, 1] (1 = correct for verifiable tasks); ``judge_score``
    is an optional LLM judge's score in [0, 1], used to break ties between equally correct
    answers when thought templates are selected. ``cost_usd`` is None when no price is known
    (never an invented zero); token counts are None when the source did not record them, and
    ``cost_estimated`` is True when the loader estimated them (see
    :func:`polyfuse.routing.load_llmrouter`).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = ROUTING_LOG_VERSION
    query_id: str | None = None
    query: str = Field(min_length=1)
    task: str | None = None
    model: str = Field(min_length=1)
    response: str | None = None
    score: float = Field(ge=0.0, le=1.0)
    judge_score: float | None = Field(default=None, ge=0.0, le=1.0)
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0.0)
    latency_s: float | None = Field(default=None, ge=0.0)
    source: str | None = None
    cost_estimated: bool | None = None
    """True when ``cost_usd`` (and the token counts) were estimated, not measured."""


def write_routing_log(
    path: str | Path, records: Iterable[RoutingRecord], *, append: bool = True
) -> int:
    """Write records as JSON Lines (appending by default); return how many were written."""
    count = 0
    with Path(path).open("a" if append else "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json(exclude_none=True) + "\n")
            count += 1
    return count


def read_routing_log(path: str | Path) -> Iterator[RoutingRecord]:
    """Read a JSON Lines routing log; a malformed line raises naming the file and line."""
    source = Path(path)
    if not source.exists():
        raise InvalidRequestError(f"routing log {source} does not exist")
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield RoutingRecord.model_validate(json.loads(line))
            except ValidationError as exc:
                problem = describe_validation_error(exc, hints={"missing": "missing column"})
                raise InvalidRequestError(
                    f"{source}:{number}: not a routing record ({problem})"
                ) from exc
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(
                    f"{source}:{number}: not a routing record ({_first_line(exc)})"
                ) from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
