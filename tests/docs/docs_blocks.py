"""Find the fenced code blocks of a Markdown page, with the harness directives written before them.

Why a small collector and not ``pytest-examples``: on this repository's pages (README.md and
docs/*.md, 93 fenced blocks) ``pytest-examples`` finds the 36 Python blocks but none of the 43
shell and console blocks, which must run too; it executes every example inside the pytest
process, so a page that sets ``Settings.llm`` or registers a LlamaIndex event handler would
leak into every later test (here each page runs in its own child process); it reads skip
rules only from the fence's info string; and it adds ``black``. The fences are parsed by
``markdown-it-py`` (a CommonMark parser, already installed with ``rich``), so indented fences
inside list items, tildes and longer fences are found exactly as GitHub renders them.

A directive is an HTML comment on the line(s) just before a fence (invisible on GitHub)::

    <!-- docs: skip needs a GPU; local-model -->

Directives, separated by ``;``:

``skip REASON``
    Not run. Python: compiled and its imports executed. Shell: every ``polyfuse`` or script
    command is checked against its ``--help`` (the options it uses must exist).
``local-model``
    Uses the embedded llama.cpp model: runs only in the ``local_model`` group.
``continue``
    A Python block that continues the namespace of the page's previous Python block.
``file NAME``
    Not run: its text is written to ``NAME`` in the page's working folder (a sample
    ``presets.toml``, ``prompts.jsonl``...), so later blocks can use it.
``output``
    The expected output of the previous block (its last command's stdout + stderr, or a
    Python block's stdout), compared with doctest's ``ELLIPSIS`` (``...`` matches anything)
    and whitespace normalised.
``output-contains "TEXT" "TEXT"...``
    The previous block's output must contain each text; the block itself is illustrative.
``background``
    A shell block whose last command is a server (``polyfuse serve``): started in the
    background, on a free port, and kept running for the rest of the page.
``fails``
    Every command of the shell block must exit with a non-zero status.
``not-run "TEXT" REASON``
    Shell commands that contain TEXT are checked against ``--help`` instead of being run
    (e.g. a command that needs your own GGUF file).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

__all__ = [
    "Block",
    "Directives",
    "DirectiveError",
    "collect",
    "console_commands",
    "shell_commands",
    "split_chain",
]

PYTHON = frozenset({"python", "py", "python3", "pycon"})
SHELL = frozenset({"bash", "sh", "shell", "console", "zsh"})

_DIRECTIVE = re.compile(r"^\s*<!--\s*docs:(?P<body>.*?)-->\s*$")


class DirectiveError(ValueError):
    """A ``<!-- docs: ... -->`` comment the harness does not understand."""


@dataclass(frozen=True)
class Directives:
    """What the comment before a block asks of the harness."""

    skip: str | None = None
    local_model: bool = False
    cont: bool = False
    file: str | None = None
    output: bool = False
    contains: tuple[str, ...] = ()
    background: bool = False
    fails: bool = False
    not_run: tuple[str, ...] = ()


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    """1-based line of the block's first source line in the page."""
    lang: str
    source: str
    directives: Directives = field(default_factory=Directives)

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.lang in PYTHON

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL


def _split_directives(text: str) -> list[str]:
    """Split on ``;`` outside double quotes (quoted texts may hold a ``;``)."""
    parts: list[str] = []
    current = ""
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if quoted:
        raise DirectiveError(f"unclosed quote in <!-- docs:{text}-->")
    return [p.strip() for p in [*parts, current] if p.strip()]


def parse_directives(text: str) -> Directives:
    """Parse the body of one ``<!-- docs: ... -->`` comment."""
    values: dict[str, object] = {}
    for part in _split_directives(text):
        word, _, rest = part.partition(" ")
        rest = rest.strip()
        if word == "skip":
            if not rest:
                raise DirectiveError("'skip' needs a reason: <!-- docs: skip needs a GPU -->")
            values["skip"] = rest
        elif word == "local-model":
            values["local_model"] = True
        elif word == "continue":
            values["cont"] = True
        elif word == "file":
            if not rest:
                raise DirectiveError("'file' needs a file name")
            values["file"] = rest
        elif word == "output":
            values["output"] = True
        elif word == "output-contains":
            values["contains"] = tuple(shlex.split(rest))
        elif word == "background":
            values["background"] = True
        elif word == "fails":
            values["fails"] = True
        elif word == "not-run":
            texts = shlex.split(rest)
            if len(texts) < 2:
                raise DirectiveError("'not-run' needs a quoted text and a reason")
            values["not_run"] = (*values.get("not_run", ()), texts[0])  # type: ignore[misc]
        else:
            raise DirectiveError(f"unknown docs directive {word!r} in <!-- docs:{text}-->")
    return Directives(**values)  # type: ignore[arg-type]


def _directives_before(lines: list[str], fence_line: int) -> Directives:
    """The directives on the non-blank lines right above line ``fence_line`` (0-based)."""
    i = fence_line - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    bodies: list[str] = []
    while i >= 0 and (m := _DIRECTIVE.match(lines[i])):
        bodies.insert(0, m.group("body"))
        i -= 1
    return parse_directives(";".join(bodies)) if bodies else Directives()


def collect(page: Path) -> list[Block]:
    """Every fenced block of ``page`` in order, with its directives."""
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks: list[Block] = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.map is None:
            continue
        lang = token.info.split()[0].lower() if token.info.strip() else ""
        try:
            directives = _directives_before(lines, token.map[0])
        except DirectiveError as exc:
            raise DirectiveError(f"{page.name}:{token.map[0] + 1}: {exc}") from None
        blocks.append(Block(page, token.map[0] + 2, lang, token.content, directives))
    return blocks


def _complete(text: str) -> bool:
    """Whether ``text`` is a complete shell line (no open quote)."""
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def shell_commands(source: str) -> list[str]:
    """The logical command lines of a shell block: backslash continuations joined, quotes
    spanning lines kept together, comment-only and blank lines dropped."""
    commands: list[str] = []
    pending = ""
    for raw in source.splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        pending += raw
        if _complete(pending):
            commands.append(pending.strip())
            pending = ""
        else:
            pending += "\n"
    if pending.strip():
        raise ValueError(f"unterminated shell line: {pending!r}")
    return commands


def console_commands(source: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block (``$ `` prompts)."""
    pairs: list[tuple[str, list[str]]] = []
    for raw in source.splitlines():
        if raw.startswith("$ "):
            pairs.append((raw[2:], []))
        elif pairs:
            pairs[-1][1].append(raw)
        elif raw.strip():
            raise ValueError(f"console block output before any '$ ' prompt: {raw!r}")
    return [(cmd, "\n".join(out).strip("\n")) for cmd, out in pairs]


def split_chain(command: str) -> list[str]:
    """Split ``a && b; c`` into its commands, outside quotes (pipes stay within a command)."""
    parts: list[str] = []
    quote = ""
    start = i = 0
    while i < len(command):
        ch = command[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            break
        elif command.startswith("&&", i) or ch == ";":
            parts.append(command[start:i])
            i += 2 if ch == "&" else 1
            start = i
            continue
        i += 1
    parts.append(command[start:i])
    return [p.strip() for p in parts if p.strip()]


def is_console(block: Block) -> bool:
    """A shell block written as a terminal session (``$ `` prompts followed by output)."""
    return block.lang == "console" or any(
        line.startswith("$ ") for line in block.source.splitlines()
    )
