"""Prompt templates, shipped as package data and replaceable by the user.

Each template is a pair of ``str.format`` strings (system, user). Load the defaults with
:func:`load_prompt` and pass your own :class:`PromptTemplate` to an aggregator to change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["PROMPT_VERSION", "PromptTemplate", "load_prompt"]

PROMPT_VERSION = "2"
"""Bumped whenever a default prompt's wording or the rendering of the conversation changes
(recorded in results). 2: every message rendered as one line with its text as a JSON string."""


@dataclass(frozen=True)
class PromptTemplate:
    """A system and a user template.

    Placeholders: ``{conversation}`` (the request, rendered), ``{candidates}`` (all candidates,
    delimited) or ``{candidate}`` (one, for judges). A template may omit any placeholder.
    """

    system: str
    user: str
    name: str = "custom"
    version: str = PROMPT_VERSION

    def render(self, **values: str) -> tuple[str, str]:
        """The system and user text with the placeholders filled in."""
        return _fill(self.system, values), _fill(self.user, values)


def _fill(template: str, values: dict[str, str]) -> str:
    # format_map with a defaulting dict: a missing placeholder is left as is.
    class _Keep(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return template.format_map(_Keep(values))


@cache
def load_prompt(name: str) -> PromptTemplate:
    """A default template by name: ``fuse``, ``judge``, ``usc`` or ``moa``."""
    files = resources.files(__name__)
    system_file = files / f"{name}.system.txt"
    if not system_file.is_file():
        raise KeyError(f"no prompt named {name!r}; known: fuse, judge, usc, moa")
    user_file = files / f"{name}.user.txt"
    user = user_file.read_text(encoding="utf-8") if user_file.is_file() else ""
    return PromptTemplate(
        system=system_file.read_text(encoding="utf-8").strip(),
        user=user.strip(),
        name=name,
    )
