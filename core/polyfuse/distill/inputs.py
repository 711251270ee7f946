"""Reading prompts: JSONL, CSV or Parquet rows into validated, hashed chat prompts.

A row's prompt is either text (one user message) or an OpenAI-style list of messages. Rows that
cannot be used become :class:`InputProblem` values carrying their line (or row) number, so that
one bad line is reported and the rest of the file is still processed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidRequestError
from ..messages import ChatRequest
from .errors import DistillInputError

__all__ = [
    "InputFormat",
    "InputProblem",
    "InputSpec",
    "PromptRow",
    "input_hash",
    "read_prompts",
]

InputFormat = Literal["auto", "jsonl", "csv", "parquet"]

_SUFFIXES: dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True, init=False)
class InputSpec:
    """Where the prompts are and how to read them.

    Args:
        path: the prompts file, as a ``str`` or any path-like (kept as a ``Path``).
        format: ``jsonl``, ``csv`` or ``parquet``; ``auto`` picks by the file's suffix.
        prompt_field: the field holding the prompt, as text or as a list of messages.
            ``None`` uses ``messages`` when a row has it, else ``prompt``.
        id_field: a field copied into each record's provenance (e.g. your dataset's row id).
        system: a system message put before each prompt that has none.
        extra_fields: fields copied as they are into each row's ``extra`` (e.g. the gold answer
            ``polyfuse eval`` grades against); missing ones are left out.
    """

    path: Path
    format: InputFormat = "auto"
    prompt_field: str | None = None
    id_field: str | None = None
    system: str | None = None
    extra_fields: tuple[str, ...] = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: InputFormat = "auto",
        prompt_field: str | None = None,
        id_field: str | None = None,
        system: str | None = None,
        extra_fields: tuple[str, ...] = (),
    ) -> None:
        # A str path is what a user types first: InputSpec("prompts.csv"). Every field must be
        # set here (this class writes its own __init__ to accept str paths).
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "format", format)
        object.__setattr__(self, "prompt_field", prompt_field)
        object.__setattr__(self, "id_field", id_field)
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "extra_fields", tuple(extra_fields))

    @property
    def resolved_format(self) -> Literal["jsonl", "csv", "parquet"]:
        """The format, with ``auto`` resolved from the suffix."""
        if self.format != "auto":
            return self.format
        found = _SUFFIXES.get(self.path.suffix.lower())
        if found is None or found == "auto":
            raise DistillInputError(
                f"cannot tell the format of {str(self.path)!r} from its suffix; "
                "name it .jsonl, .csv or .parquet, or pass --input-format"
            )
        return found

    def describe_field(self) -> str:
        """The prompt field for messages (``'messages' or 'prompt'`` when automatic)."""
        return repr(self.prompt_field) if self.prompt_field else "'messages' or 'prompt'"


@dataclass(frozen=True)
class PromptRow:
    """One usable prompt: validated OpenAI messages, their hash, and where they came from.

    ``extra`` holds the fields named in :attr:`InputSpec.extra_fields` (not part of the hash).
    """

    messages: list[dict[str, Any]]
    input_hash: str
    line: int
    source_id: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for shipping the row to another process)."""
        return {
            "messages": self.messages,
            "input_hash": self.input_hash,
            "line": self.line,
            "source_id": self.source_id,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptRow:
        """The inverse of :meth:`to_dict`."""
        return cls(
            messages=list(data["messages"]),
            input_hash=str(data["input_hash"]),
            line=int(data["line"]),
            source_id=data.get("source_id"),
            extra=dict(data.get("extra") or {}),
        )


@dataclass(frozen=True)
class InputProblem:
    """A row that could not be used, and why; ``line`` is 1-based (a row number for Parquet)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def input_hash(messages: list[dict[str, Any]]) -> str:
    """The stable identity of a prompt: SHA-256 of its messages as canonical JSON."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_prompts(spec: InputSpec) -> Iterator[PromptRow | InputProblem]:
    """Every row of the file, as a :class:`PromptRow` or an :class:`InputProblem`.

    Raises :class:`DistillInputError` at once when the file is missing or unreadable, or when a
    CSV/Parquet file has no column for the prompt.
    """
    if not spec.path.exists():
        raise DistillInputError(f"the prompts file {str(spec.path)!r} does not exist")
    if spec.path.is_dir():
        raise DistillInputError(f"{str(spec.path)!r} is a directory; pass a prompts file")
    fmt = spec.resolved_format
    if fmt == "jsonl":
        return _read_jsonl(spec)
    if fmt == "csv":
        return _read_csv(spec)
    return _read_parquet(spec)


def _read_jsonl(spec: InputSpec) -> Iterator[PromptRow | InputProblem]:
    try:
        handle = spec.path.open("rb")
    except OSError as exc:
        raise DistillInputError(f"cannot read {str(spec.path)!r}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except UnicodeDecodeError:
                yield InputProblem(number, "not valid UTF-8")
                continue
            except ValueError as exc:
                yield InputProblem(number, f"not valid JSON ({exc})")
                continue
            if not isinstance(record, dict):
                yield InputProblem(number, f"a JSON {type(record).__name__}, not an object")
                continue
            yield _row(record, spec, number)


def _read_csv(spec: InputSpec) -> Iterator[PromptRow | InputProblem]:
    try:
        handle = spec.path.open(newline="", encoding="utf-8")
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DistillInputError(f"cannot read {str(spec.path)!r} as CSV: {exc}") from None
    _check_columns(spec, columns)
    with handle:
        start = reader.line_num + 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield InputProblem(start, f"not valid CSV ({exc})")
                start = reader.line_num + 1
                continue
            row = {k: v for k, v in record.items() if k is not None and v is not None}
            yield _row(row, spec, start)
            start = reader.line_num + 1


def _read_parquet(spec: InputSpec) -> Iterator[PromptRow | InputProblem]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DistillInputError(
            'reading Parquet needs pyarrow: pip install ".[ray]" in a polyfuse checkout (or pyarrow)'
        ) from None
    try:
        parquet = pq.ParquetFile(spec.path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise DistillInputError(f"cannot read {str(spec.path)!r} as Parquet: {exc}") from None
    _check_columns(spec, list(parquet.schema_arrow.names))
    return _parquet_rows(parquet, spec)


def _parquet_rows(parquet: Any, spec: InputSpec) -> Iterator[PromptRow | InputProblem]:
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            number += 1
            yield _row(record, spec, number)


def _check_columns(spec: InputSpec, columns: list[str]) -> None:
    wanted = [spec.prompt_field] if spec.prompt_field else ["messages", "prompt"]
    if not any(name in columns for name in wanted):
        raise DistillInputError(
            f"{str(spec.path)!r} has no column {spec.describe_field()} "
            f"(columns: {', '.join(columns) or 'none'}); name the prompt column with "
            "--prompt-field"
        )


def _row(record: Mapping[str, Any], spec: InputSpec, line: int) -> PromptRow | InputProblem:
    field = spec.prompt_field or ("messages" if "messages" in record else "prompt")
    if field not in record:
        return InputProblem(line, f"no field {spec.describe_field()} (fields: {_keys(record)})")
    value = record[field]
    if isinstance(value, str) and field == "messages":  # e.g. a CSV cell holding JSON
        try:
            value = json.loads(value)
        except ValueError:
            return InputProblem(line, f"field {field!r} is not a JSON list of messages")
    messages = _as_messages(value, field)
    if isinstance(messages, str):
        return InputProblem(line, messages)
    if spec.system is not None and messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": spec.system})
    try:
        wire = ChatRequest.build(messages).wire_messages
    except InvalidRequestError as exc:
        return InputProblem(line, f"field {field!r}: {exc}")
    source_id = record.get(spec.id_field) if spec.id_field else None
    extra = {name: record[name] for name in spec.extra_fields if name in record}
    return PromptRow(
        messages=wire, input_hash=input_hash(wire), line=line, source_id=source_id, extra=extra
    )


def _as_messages(value: Any, field: str) -> list[dict[str, Any]] | str:
    """The prompt as a list of message dicts, or a problem description."""
    if isinstance(value, str):
        if not value.strip():
            return f"field {field!r} is empty"
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        kind = "an empty list" if isinstance(value, list) else f"a {type(value).__name__}"
        return f"field {field!r} is {kind}; expected text or a list of messages"
    messages: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping):
            return f"field {field!r} holds a {type(item).__name__}, not a message object"
        messages.append({k: v for k, v in item.items() if v is not None})
    # A conversation that already ends with an answer: the teachers answer it afresh.
    while messages and messages[-1].get("role") == "assistant":
        messages.pop()
    if not messages:
        return f"field {field!r} holds only assistant messages; nothing to answer"
    return messages


def _keys(record: Mapping[str, Any]) -> str:
    names = [str(k) for k in record]
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "none"
