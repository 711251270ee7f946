"""Running ``polyfuse`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class CliRun:
    """A finished ``polyfuse`` invocation."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The ``error:`` lines printed on stderr."""
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> CliRun:
    """Run ``python -m polyfuse.cli ARGS`` (stdin is a pipe holding ``stdin``)."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("POLYFUSE_API")
    }
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )
    return CliRun(code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def assert_one_line_error(run: CliRun, code: int, fragment: str) -> None:
    """The run failed with ``code`` and exactly one ``error:`` line containing ``fragment``."""
    assert run.code == code, (run.code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    assert fragment in run.error_lines[0], run.error_lines[0]
