"""Phase two of an eval: grade and judge every generation record, appending each judgment to a
crash-safe JSONL file as soon as it exists.

Every judgment has a key — prompt, subject (a strategy, or ``candidate:<i>``), kind (``grade``,
``pairwise``, ``rubric``), opponent and position order — and a restarted run skips the keys
already in the file: nothing is judged twice and nothing judged is lost.

What each row gets (``mode="auto"``): a verifiable grade when it has a gold answer or tests;
otherwise a pairwise judgment against its reference answer when it has one; otherwise each
strategy head to head against the baseline strategy. ``mode`` can force ``reference``,
``head-to-head`` or ``rubric``. Candidates are graded too (per-model quality, routing logs); on
judged rows they get a rubric score when ``judge_candidates`` is on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..distill.outcome import encode_line
from ..distill.store import JsonlAppender, read_jsonl, scan_jsonl
from .errors import EvalDataError
from .graders import grade_answer, grader_for
from .judges import JudgeReply, PairwiseJudge, RubricJudge
from .rows import EvalRow
from .sandbox import SandboxLimits

__all__ = ["JudgeMode", "JudgingPlan", "judge_records", "judgment_key", "read_judgments"]

JudgeMode = Literal["auto", "reference", "head-to-head", "rubric"]


def judgment_key(
    input_hash: str, subject: str, kind: str, opponent: str | None = None, order: str | None = None
) -> str:
    """The identity of one judgment (what resume deduplicates on)."""
    return "|".join([input_hash, subject, kind, opponent or "", order or ""])


@dataclass
class JudgingPlan:
    """How to score the generations.

    Args:
        mode: see the module doc.
        pairwise: the pairwise judge (``None``: judged rows are skipped and counted).
        rubric: the rubric judge (``None``: no rubric scores).
        baseline: the strategy others meet head to head.
        grader: a grader name overriding the rows'.
        judge_candidates: rubric-score the candidates of judged rows (for routing logs).
        code_limits: sandbox limits of code graders.
        concurrency: records judged at once.
    """

    mode: JudgeMode = "auto"
    pairwise: PairwiseJudge | None = None
    rubric: RubricJudge | None = None
    baseline: str = "single"
    grader: str | None = None
    judge_candidates: bool = True
    code_limits: SandboxLimits | None = None
    concurrency: int = 16


def _row(record: Mapping[str, Any]) -> EvalRow:
    data = dict(record.get("row") or {})
    return EvalRow(
        input_hash=str(record["input_hash"]),
        messages=[{"role": "user", "content": str(record.get("question") or "")}],
        id=str(data.get("id") or record["input_hash"][:12]),
        gold=data.get("gold"),
        reference=data.get("reference"),
        task=str(data.get("task") or "default"),
        language=data.get("language"),
        grader=data.get("grader"),
        test_code=data.get("test_code"),
        entry_point=data.get("entry_point"),
        code_prefix=data.get("code_prefix"),
    )


def read_judgments(path: Path) -> list[dict[str, Any]]:
    """Every judgment line of a judgments file (none when it does not exist; a torn last line
    is left out).

    Raises :class:`~polyfuse.eval.EvalDataError` naming the line when any other line is not a
    judgment.
    """
    return read_jsonl(
        path,
        kind="polyfuse eval judgment (no key)",
        accept=lambda entry: "key" in entry,
        error=EvalDataError,
    )


class _Writer:
    def __init__(self, appender: JsonlAppender, on_line: Callable[[], None] | None) -> None:
        self.appender = appender
        self.on_line = on_line
        self.lock = asyncio.Lock()
        self.written = 0

    async def write(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        async with self.lock:
            await asyncio.to_thread(self.appender.append, [encode_line(x) for x in lines])
        self.written += len(lines)
        if self.on_line is not None:
            self.on_line()


class _RecordJudge:
    """Judges one generation record, skipping keys already done."""

    def __init__(
        self, plan: JudgingPlan, done: set[str], writer: _Writer, code_gate: asyncio.Semaphore
    ) -> None:
        self.plan = plan
        self.done = done
        self.writer = writer
        self.code_gate = code_gate
        self.replies: dict[tuple[str, str, str], tuple[asyncio.Future[JudgeReply], str]] = {}

    def _mode(self, row: EvalRow) -> str | None:
        """What scores this row: grade, reference, head-to-head, rubric (None: nothing can)."""
        if grader_for(row, self.plan.grader) is not None and self.plan.mode == "auto":
            return "grade"
        mode = self.plan.mode
        if mode == "auto":
            mode = "reference" if row.reference else "head-to-head"
        if mode == "reference" and not row.reference:
            mode = "head-to-head"
        return mode

    async def _grade(self, record: Mapping[str, Any], row: EvalRow) -> None:
        lines: list[dict[str, Any]] = []
        subjects: list[tuple[str, str | None, dict[str, Any]]] = []
        for name, result in (record.get("strategies") or {}).items():
            subjects.append((name, result.get("answer"), {"strategy": name}))
        for cand in record.get("candidates") or []:
            if cand.get("status") == "ok":
                subjects.append(
                    (
                        f"candidate:{cand['index']}",
                        cand.get("text"),
                        {"candidate": cand["index"], "model": cand.get("name")},
                    )
                )
        for subject, answer, extra in subjects:
            key = judgment_key(row.input_hash, subject, "grade")
            if key in self.done:
                continue
            if answer is None:
                graded: tuple[str, Any] | None = None
                line = {"score": 0.0, "extracted": None, "detail": "the strategy failed"}
            else:
                if grader_for(row, self.plan.grader) == "code":
                    async with self.code_gate:
                        graded = await grade_answer(
                            answer,
                            row,
                            override=self.plan.grader,
                            code_limits=self.plan.code_limits,
                        )
                else:
                    graded = await grade_answer(answer, row, override=self.plan.grader)
                if graded is None:
                    continue
                name, grade = graded
                line = {
                    "grader": name,
                    "score": grade.score,
                    "extracted": grade.extracted,
                    "detail": grade.detail,
                }
            lines.append(
                {
                    "key": key,
                    "input_hash": row.input_hash,
                    "task": row.task,
                    "kind": "grade",
                    "subject": subject,
                    **extra,
                    **line,
                }
            )
        await self.writer.write(lines)

    async def _pairwise(
        self, row: EvalRow, subject: str, answer: str, opponent: str, other: str
    ) -> None:
        judge = self.plan.pairwise
        if judge is None:
            return

        async def one(order: str) -> None:
            key = judgment_key(row.input_hash, subject, "pairwise", opponent, order)
            if key in self.done:
                return
            pair = (answer, other) if order == "ab" else (other, answer)
            reply, first = await self._reply(judge, row, pair, subject)
            extra: dict[str, Any] = {}
            if first != subject:
                # The same two texts in the same order were already judged for another strategy
                # (e.g. vote and single picked the same candidate): reuse that verdict, count its
                # cost once.
                extra = {"reused_from": first, "prompt_tokens": 0, "completion_tokens": 0}
            await self.writer.write(
                [
                    {
                        "key": key,
                        "input_hash": row.input_hash,
                        "task": row.task,
                        "kind": "pairwise",
                        "subject": subject,
                        "strategy": subject,
                        "opponent": opponent,
                        "order": order,
                        **reply.to_dict(),
                        **extra,
                    }
                ]
            )

        await asyncio.gather(one("ab"), one("ba"))

    async def _reply(
        self, judge: PairwiseJudge, row: EvalRow, pair: tuple[str, str], subject: str
    ) -> tuple[JudgeReply, str]:
        """The judge's reply for this pair of texts (made once per run), and who asked first."""
        key = (row.input_hash, *pair)
        found = self.replies.get(key)
        if found is None:
            task = asyncio.ensure_future(judge.judge(row.question, *pair))
            found = self.replies[key] = (task, subject)
        task, first = found
        return await asyncio.shield(task), first

    async def _rubric(
        self, row: EvalRow, subject: str, answer: str, extra: Mapping[str, Any]
    ) -> None:
        judge = self.plan.rubric
        key = judgment_key(row.input_hash, subject, "rubric")
        if judge is None or key in self.done:
            return
        reply = await judge.judge(row.question, answer, row.reference)
        await self.writer.write(
            [
                {
                    "key": key,
                    "input_hash": row.input_hash,
                    "task": row.task,
                    "kind": "rubric",
                    "subject": subject,
                    **extra,
                    **reply.to_dict(),
                }
            ]
        )

    async def judge(self, record: Mapping[str, Any]) -> None:
        row = _row(record)
        mode = self._mode(row)
        if mode == "grade":
            await self._grade(record, row)
            return
        strategies: dict[str, Any] = dict(record.get("strategies") or {})
        jobs: list[Any] = []
        baseline = strategies.get(self.plan.baseline, {}).get("answer")
        for name, result in strategies.items():
            answer = result.get("answer")
            if answer is None:
                continue
            if mode == "reference" and row.reference:
                jobs.append(self._pairwise(row, name, answer, "reference", row.reference))
            elif mode == "head-to-head":
                if name != self.plan.baseline and baseline is not None:
                    jobs.append(self._pairwise(row, name, answer, self.plan.baseline, baseline))
            elif mode == "rubric":
                jobs.append(self._rubric(row, name, answer, {"strategy": name}))
        if self.plan.judge_candidates:
            for cand in record.get("candidates") or []:
                if cand.get("status") == "ok" and cand.get("text"):
                    extra = {"candidate": cand["index"], "model": cand.get("name")}
                    jobs.append(
                        self._rubric(row, f"candidate:{cand['index']}", cand["text"], extra)
                    )
        await asyncio.gather(*jobs)


async def judge_records(
    records: Iterable[Mapping[str, Any]],
    path: Path,
    plan: JudgingPlan,
    *,
    fsync: bool = True,
    on_line: Callable[[], None] | None = None,
) -> int:
    """Grade and judge ``records`` into ``path`` (resuming); return the judgment lines written."""
    if path.exists():
        # Cut a torn last line (a crash mid-write) so that new lines start on a line of their own.
        await asyncio.to_thread(scan_jsonl, path, repair=True)
    done = {str(j.get("key")) for j in read_judgments(path)}
    appender = JsonlAppender(path, fsync=fsync).open()
    try:
        writer = _Writer(appender, on_line)
        judge = _RecordJudge(plan, done, writer, asyncio.Semaphore(2))
        room = asyncio.Semaphore(max(1, plan.concurrency))

        async def one(record: Mapping[str, Any]) -> None:
            async with room:
                await judge.judge(record)

        await asyncio.gather(*(one(r) for r in records))
        return writer.written
    finally:
        appender.close()
