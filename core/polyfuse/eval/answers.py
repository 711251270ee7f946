"""Pulling the final answer out of a model's text: a number, a boxed expression, a choice letter,
a code block.

Each extractor prefers an explicit final-answer marker (``\\boxed{}``, ``#### N``, "the answer
is N", an ``"answer"`` JSON field) and falls back to the last such thing in the text.
"""

from __future__ import annotations

import json
import re

__all__ = [
    "extract_boxed",
    "extract_choice",
    "extract_code",
    "extract_final",
    "extract_number",
    "parse_number",
]

_NUMBER = re.compile(r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_MARKERS = (
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"^\s*answer\s*:\s*([^\n]+)", re.IGNORECASE | re.MULTILINE),
)
_CHOICE_MARKERS = (
    re.compile(r"(?:answer|choice|option)\s*(?:is|:)?\s*:?\s*\(?\**([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"^\s*\(?([A-J])[).:]?\s*$", re.MULTILINE),
    re.compile(r"^\s*\(?([A-J])[).:]\s", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
)
_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[^\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` or ``\fbox{...}`` (nested braces allowed)."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    begin, depth = i, 0
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
        i += 1
    return None


def _json_answer(text: str) -> str | None:
    """The ``answer`` field when the whole reply is a JSON object (ZeroEval's format)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        match = re.search(r'"answer"\s*:\s*"([^"]*)"', stripped)
        return match.group(1) if match else None
    if isinstance(data, dict) and "answer" in data:
        return str(data["answer"])
    return None


def extract_final(text: str) -> str:
    """The part of ``text`` that states the final answer (the whole text when none does)."""
    found = _json_answer(text)
    if found is not None:
        return found
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    for marker in _MARKERS:
        matches = marker.findall(text)
        if matches:
            return str(matches[-1]).strip()
    return text


def parse_number(raw: str) -> float | None:
    """``"$1,234.50"`` → 1234.5; ``"3/4"`` → 0.75; ``"12%"`` → 12.0; None when not a number."""
    cleaned = raw.strip().replace(",", "").replace("$", "").replace("\\%", "").rstrip("%.")
    cleaned = cleaned.replace("\\!", "").strip()
    frac = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", cleaned)
    if frac:
        denominator = float(frac.group(2))
        return float(frac.group(1)) / denominator if denominator else None
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final number: in the final-answer part when there is one, else the text's last.

    Commas, currency and units are dropped (``"$1,000 per week"`` → 1000).
    """
    for part in (extract_final(text), text):
        found = _NUMBER.findall(part)
        if found:
            # In a final-answer phrase the first number is the answer ("18 dollars (9 x 2)");
            # in free text it is the last one.
            raw = found[0] if part is not text else found[-1]
            value = parse_number(raw.replace(" ", ""))
            if value is not None:
                return value
    return None


def extract_choice(text: str) -> str | None:
    """The chosen option letter (A–J), upper case."""
    for marker in _CHOICE_MARKERS:
        matches = marker.findall(text)
        if matches:
            return str(matches[-1]).upper()
    return None


def extract_code(text: str) -> str:
    """The Python to run: the longest fenced code block, or the whole text when there is none."""
    blocks = _CODE_BLOCK.findall(text)
    if not blocks:
        return text
    return max(blocks, key=len)
