"""Run a page's blocks in order, the way a reader would, against servers on 127.0.0.1.

* Python blocks run in a per-page child process (:mod:`docs_kernel`), each in a fresh namespace.
* Shell blocks run with ``bash`` in the page's working folder (``examples/`` and
  ``benchmarks/`` linked in), with this interpreter's ``bin`` first on ``PATH``.
* Every ``http(s)://HOST[:PORT]/v1`` a doc names as the reader's server is replaced by the
  fake server's URL (``127.0.0.1:9``, the documented unreachable address, is kept); the
  ``polyfuse serve`` address ``:8090`` becomes the background server started by the page.
* Commands that would install packages, run the test suite or a benchmark are checked, not
  run: extras must exist in ``pyproject.toml``, paths and markers must exist, scripts must
  accept the options used (``--help``).
* Answers from the embedded model are capped at :data:`LOCAL_MAX_TOKENS` to keep CI time
  modest (the protocol is the same): in ``local-model`` blocks every ``max_tokens=N``,
  ``"max_tokens": N`` and ``--max-tokens N`` above the cap is lowered to it, and ``polyfuse
  ask`` and ``python examples/*.py --local`` commands that give none get ``--max-tokens``.
"""

from __future__ import annotations

import doctest
import json
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from docs_blocks import Block, console_commands, is_console, shell_commands, split_chain
from docs_kernel import MARK

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # pyright: ignore[reportMissingImports]

__all__ = [
    "LOCAL_MAX_TOKENS",
    "PageRunner",
    "Outcome",
    "cap_local_answers",
    "check_output",
    "free_port",
    "substitute_urls",
]

REPO = Path(__file__).resolve().parents[2]
KERNEL = Path(__file__).resolve().with_name("docs_kernel.py")

LOCAL_MAX_TOKENS = 16
"""Cap of every embedded-model answer a page asks for (see :func:`cap_local_answers`)."""

_MAX_TOKENS = re.compile(
    r'(?P<key>\bmax_tokens\s*=\s*|"max_tokens"\s*:\s*|--max-tokens[ =])(?P<n>\d+)'
)
_UNCAPPED = re.compile(
    r"^(?P<head>(echo .*\| *)?polyfuse ask\b|(\S*/)?python3? \S*examples/\S+\.py\b(?=.*--local\b))"
)

_URL = re.compile(r"https?://(?P<host>[A-Za-z0-9.\-\[\]]+)(?::(?P<port>\d+))?/v1")
_KEEP = {("127.0.0.1", "9")}
_SERVE_PORT = "8090"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def substitute_urls(text: str, fake_url: str, serve_url: str | None) -> str:
    """Point the reader's servers named in ``text`` at the harness's servers."""

    def replace(m: re.Match[str]) -> str:
        if (m["host"], m["port"]) in _KEEP:
            return m[0]
        if m["port"] == _SERVE_PORT and serve_url is not None:
            return serve_url
        return fake_url

    return _URL.sub(replace, text)


def cap_local_answers(text: str, *, command: bool) -> str:
    """``text`` of a ``local-model`` block with every answer capped at :data:`LOCAL_MAX_TOKENS`.

    Explicit budgets above the cap are lowered; a ``polyfuse ask`` or ``python examples/X.py
    --local`` ``command`` that gives none gets ``--max-tokens``.
    """
    text = _MAX_TOKENS.sub(lambda m: f"{m['key']}{min(int(m['n']), LOCAL_MAX_TOKENS)}", text)
    if command and "--max-tokens" not in text.split("#")[0]:
        text = _UNCAPPED.sub(lambda m: f"{m['head']} --max-tokens {LOCAL_MAX_TOKENS}", text, 1)
    return text


def check_output(expected: str, actual: str) -> bool:
    """doctest's comparison: ``...`` matches anything, whitespace runs are equal."""
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    return checker.check_output(expected.strip() + "\n", actual.strip() + "\n", flags)


@dataclass
class Outcome:
    """What happened to one block (or one command of it)."""

    where: str
    ok: bool
    detail: str = ""


@dataclass
class _Kernel:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    log: list[str] = field(default_factory=list)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _extras() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


def _markers() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        lines = tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]
    return {line.split(":")[0].strip() for line in lines}


class PageRunner:
    """Runs the blocks of one page in order; collects one :class:`Outcome` per check."""

    def __init__(
        self,
        workdir: Path,
        fake_url: str,
        env: dict[str, str],
        *,
        timeout_s: float = 300.0,
    ) -> None:
        self.workdir = workdir
        self.fake_url = fake_url
        self.env = env
        self.timeout_s = timeout_s
        self.serve_url: str | None = None
        self.outcomes: list[Outcome] = []
        self._kernel: _Kernel | None = None
        self._background: list[subprocess.Popen[bytes]] = []
        self._last_output: str | None = None
        self.exported: dict[str, str] = {}
        """``export NAME=VALUE`` lines of the page's shell blocks: like one terminal session,
        they hold for every later command and for the Python blocks that start after them."""
        self._last_where = ""
        for name in ("examples", "benchmarks"):
            link = workdir / name
            if not link.exists():
                link.symlink_to(REPO / name)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._kernel is not None:
            assert self._kernel.process.stdin is not None
            self._kernel.process.stdin.close()
            try:
                self._kernel.process.wait(30)
            except subprocess.TimeoutExpired:
                self._kernel.process.kill()
                self._kernel.process.wait()
            self._kernel = None
        for proc in self._background:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._background.clear()

    def __enter__(self) -> PageRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ dispatch

    def run(self, blocks: list[Block]) -> list[Outcome]:
        for block in blocks:
            self.run_block(block)
        return self.outcomes

    def run_block(self, block: Block) -> None:
        d = block.directives
        if d.file:
            target = self.workdir / d.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self._subst(block.source), encoding="utf-8")
            return
        if d.output or d.contains:
            self._check_previous_output(block)
            return
        if block.is_python:
            self._run_python(block)
        elif block.is_shell:
            if is_console(block):
                self._run_console(block)
            else:
                self._run_shell(block)

    def _subst(self, text: str) -> str:
        return substitute_urls(text, self.fake_url, self.serve_url)

    @staticmethod
    def _local(block: Block, source: str) -> str:
        return cap_local_answers(source, command=False) if block.directives.local_model else source

    def _record(self, where: str, ok: bool, detail: str = "") -> None:
        self.outcomes.append(Outcome(where, ok, detail))

    # ------------------------------------------------------------------ output

    def _check_previous_output(self, block: Block) -> None:
        actual = self._last_output
        if actual is None:
            self._record(block.where, False, "an output block with no run block before it")
            return
        d = block.directives
        if d.output and not check_output(block.source, actual):
            self._record(
                block.where,
                False,
                f"output of {self._last_where} differs from the page\n--- page:\n"
                f"{block.source}\n--- actual:\n{actual}",
            )
            return
        missing = [text for text in d.contains if text not in actual]
        if missing:
            self._record(
                block.where,
                False,
                f"output of {self._last_where} lacks {missing!r}\n--- actual:\n{actual}",
            )
            return
        self._record(block.where, True)

    # ------------------------------------------------------------------ python

    def _kernel_for(self) -> _Kernel:
        if self._kernel is None or self._kernel.process.poll() is not None:
            process = subprocess.Popen(
                [sys.executable, str(KERNEL)],
                cwd=self.workdir,
                env={**self.env, **self.exported},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            lines: queue.Queue[str | None] = queue.Queue()
            assert process.stdout is not None
            threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
            self._kernel = _Kernel(process, lines)
        return self._kernel

    def _ask_kernel(self, request: dict[str, Any]) -> dict[str, Any]:
        kernel = self._kernel_for()
        assert kernel.process.stdin is not None
        kernel.process.stdin.write(json.dumps(request) + "\n")
        kernel.process.stdin.flush()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                line = kernel.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                kernel.process.kill()
                self._kernel = None
                return {"ok": False, "error": f"timed out after {self.timeout_s:.0f} s"}
            if line is None:
                self._kernel = None
                log = "".join(kernel.log[-40:])
                return {"ok": False, "error": f"the Python process died\n{log}"}
            if line.startswith(MARK):
                result: dict[str, Any] = json.loads(line[len(MARK) :])
                result["log"] = "".join(kernel.log)
                kernel.log.clear()
                return result
            kernel.log.append(line)

    def _run_python(self, block: Block) -> None:
        d = block.directives
        result = self._ask_kernel(
            {
                "source": self._local(block, self._subst(block.source)),
                "page": str(block.page),
                "line": block.line,
                "mode": "imports" if d.skip else "run",
                "continue": d.cont,
            }
        )
        self._last_output = str(result.get("stdout", ""))
        self._last_where = block.where
        detail = "" if result["ok"] else f"{result['error']}\n{result.get('log', '')}"
        self._record(block.where, bool(result["ok"]), detail)

    # ------------------------------------------------------------------ shell

    def _run_console(self, block: Block) -> None:
        for command, expected in console_commands(block.source):
            fails = block.directives.fails or expected.lstrip().startswith("error:")
            output = self._command(block, command, fails)
            if output is not None and expected and not check_output(expected, output):
                self._record(
                    f"{block.where} $ {command}",
                    False,
                    f"--- page:\n{expected}\n--- actual:\n{output}",
                )

    def _run_shell(self, block: Block) -> None:
        commands = shell_commands(block.source)
        for i, command in enumerate(commands):
            if command.startswith("export "):
                self._export(block, command)
                continue
            background = block.directives.background and i == len(commands) - 1
            self._command(block, command, block.directives.fails, background)

    def _export(self, block: Block, command: str) -> None:
        words = shlex.split(self._subst(command), comments=True)[1:]
        for word in words:
            name, sep, value = word.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self._record(f"{block.where} $ {command}", False, f"cannot read {word!r}")
                return
            self.exported[name] = value

    def _command(
        self,
        block: Block,
        line: str,
        fails: bool,
        background: bool = False,
    ) -> str | None:
        """Run (or check) every command of a ``&&`` chain; the last one's output."""
        where = f"{block.where} $ {line}"
        output: str | None = None
        for command in split_chain(line):
            static = self._static_check(block, command)
            if static is not None:
                self._record(where, static == "", static)
                continue
            if background and command.startswith("polyfuse serve"):
                self._start_server(where, command)
                continue
            output = self._execute(where, command, fails, block)
        if output is not None:
            self._last_output = output
            self._last_where = where
        return output

    def _prepare(self, command: str, block: Block) -> str:
        command = self._subst(command)
        command = command.replace(".venv/bin/python", shlex.quote(sys.executable))
        if block.directives.local_model:
            command = cap_local_answers(command, command=True)
        return command

    def _execute(self, where: str, command: str, fails: bool, block: Block) -> str | None:
        try:
            done = subprocess.run(
                ["bash", "-c", self._prepare(command, block)],
                cwd=self.workdir,
                env={**self.env, **self.exported},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=self.timeout_s,
            )
        except subprocess.TimeoutExpired:
            self._record(where, False, f"timed out after {self.timeout_s:.0f} s")
            return None
        ok = (done.returncode != 0) if fails else (done.returncode == 0)
        status = "non-zero" if fails else "0"
        detail = "" if ok else f"exit {done.returncode} (expected {status})\n{done.stdout}"
        self._record(where, ok, detail)
        return done.stdout

    def _start_server(self, where: str, command: str) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            ["bash", "-c", f"exec {self._subst(command)} --port {port}"],
            cwd=self.workdir,
            env={**self.env, **self.exported},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._background.append(process)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                assert process.stderr is not None
                err = process.stderr.read().decode(errors="replace")
                self._record(where, False, f"the server exited ({process.returncode})\n{err}")
                return
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    self.serve_url = f"{url}/v1"
                    self._record(where, True)
                    return
            except OSError:
                time.sleep(0.2)
        self._record(where, False, "the server did not start listening in time")

    # ------------------------------------------------------------------ static checks

    def _static_check(self, block: Block, command: str) -> str | None:
        """``None`` when the command runs; else ``""`` (checked, fine) or what is wrong."""
        try:
            words = shlex.split(command, comments=True)
        except ValueError as exc:
            return f"not a valid shell line: {exc}"
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value prefixes
        if not words:
            return ""
        program = Path(words[0]).name
        module = words[2] if program.startswith("python") and words[1:2] == ["-m"] else None
        if program == "pip" or module == "pip":
            return _check_pip(words)
        if module == "pytest":
            return _check_pytest(words[3:])
        if module in ("ruff", "pyright") or program in ("ruff", "pyright", "run"):
            return ""
        if program == "bash" and len(words) > 1:
            return "" if (REPO / words[1]).exists() else f"no such script {words[1]}"
        skipped = block.directives.skip is not None or any(
            text in command for text in block.directives.not_run
        )
        target = module or (words[1] if program.startswith("python") and len(words) > 1 else "")
        if skipped or target.startswith(("benchmarks/", "benchmarks.")):
            return self._help_check(words)
        return None

    def _help_check(self, words: list[str]) -> str:
        """The options a command uses must appear in its ``--help``."""
        program = Path(words[0]).name
        if program == "polyfuse":
            sub = [w for w in words[1:2] if not w.startswith("-")]
            argv = ["polyfuse", *sub, "--help"]
            rest = words[1 + len(sub) :]
        elif program.startswith("python") and len(words) > 1 and words[1].endswith(".py"):
            script = REPO / words[1]
            if not script.exists():
                return f"no such script {words[1]}"
            argv = [sys.executable, str(script), "--help"]
            rest = words[2:]
        elif program.startswith("python") and len(words) > 2 and words[1] == "-m":
            argv = [sys.executable, "-m", words[2], "--help"]
            rest = words[3:]
        elif program in ("curl", "echo", "export", "cat", "mkdir", "set", "cd"):
            return ""
        else:
            return f"cannot check {program!r} without running it; mark what it needs"
        done = subprocess.run(
            argv,
            cwd=REPO,
            env={**self.env, "COLUMNS": "200", "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            return f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"
        used = {w.split("=")[0] for w in rest if w.startswith("-") and w != "-"}
        missing = sorted(
            o for o in used if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", done.stdout)
        )
        return f"options not in --help: {missing}" if missing else ""


def _check_pip(words: list[str]) -> str:
    problems: list[str] = []
    extras = _extras()
    for word in words:
        m = re.fullmatch(r"(\S*?)\[([^\]]+)\]", word)
        if not m or m[1] not in (".", "polyfuse"):
            continue  # another package's extras (e.g. transformers[serving])
        if m[1] == "polyfuse":
            problems.append(f'{word!r}: polyfuse is not on the index; from a checkout: ".[...]"')
            continue
        problems += [f"no extra {e!r}" for e in m[2].split(",") if e.strip() not in extras]
    return "; ".join(problems)


def _check_pytest(args: list[str]) -> str:
    problems: list[str] = []
    markers = _markers()
    it: Iterator[str] = iter(args)
    for arg in it:
        if arg == "-m":
            expr = next(it, "")
            names = set(re.findall(r"[A-Za-z_]+", expr)) - {"not", "and", "or"}
            problems += [f"no marker {n!r}" for n in sorted(names - markers)]
        elif not arg.startswith("-") and not (REPO / arg.split("::")[0]).exists():
            problems.append(f"no such test path {arg}")
    return "; ".join(problems)
