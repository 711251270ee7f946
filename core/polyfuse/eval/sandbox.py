"""Running untrusted code: a subprocess with time, memory, process and network limits, in a
temporary directory that is removed afterwards.

Layers, so that one missing layer does not open the box:

* ``RLIMIT_CPU`` and a wall-clock timeout; on timeout the whole process group is killed;
* ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE`` (files written), ``RLIMIT_NPROC`` (processes; the
  kernel ignores it for root), ``RLIMIT_CORE`` = 0;
* a new network namespace with no interfaces (``unshare(CLONE_NEWNET)``, with a user namespace
  when not root) where the kernel allows it;
* a prelude that replaces ``socket``, ``fork``, ``exec*``, ``system``, ``setsid`` and
  ``subprocess`` with functions that raise and makes ``ctypes``, ``_socket`` and
  ``_posixsubprocess`` unimportable, so code that tries them fails even where namespaces are
  not allowed;
* ``python -I`` (no environment variables, no user site), empty environment, cwd in the temp dir.

This is a guard against accidents and sloppy model code, not a security boundary against a
determined attacker: run untrusted evals in a container or VM as well.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxLimits", "SandboxResult", "run_python"]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

_PRELUDE = r"""
import builtins as _b, os as _os, posix as _posix, sys as _sys
def _blocked(*_a, **_k):
    raise PermissionError("blocked by the polyfuse eval sandbox")
import socket as _socket
class _NoSocket(_socket.socket):
    def __init__(self, *a, **k):
        _blocked()
_socket.socket = _NoSocket
for _name in ("create_connection", "socketpair", "fromfd", "getaddrinfo"):
    setattr(_socket, _name, _blocked)
for _name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle",
              "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
              "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
              "posix_spawnp", "kill", "killpg", "setsid", "setpgid", "setpgrp"):
    for _module in (_os, _posix):
        if hasattr(_module, _name):
            setattr(_module, _name, _blocked)
import subprocess as _subprocess
_subprocess.Popen = _blocked
import multiprocessing as _mp
_mp.Process.start = _blocked
for _name in ("ctypes", "_ctypes", "_posixsubprocess", "_socket", "pty", "cffi"):
    _sys.modules[_name] = None
del _b, _os, _posix, _sys, _name, _module, _socket, _subprocess, _mp
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run.

    Args:
        timeout_s: wall-clock seconds before the process group is killed.
        cpu_s: CPU seconds (``RLIMIT_CPU``).
        memory_mb: address space in MiB (``RLIMIT_AS``).
        file_mb: largest file the code may write, in MiB.
        processes: ``RLIMIT_NPROC`` (not enforced by the kernel for root; the prelude still
            blocks ``fork``).
        network: allow sockets (default: no).
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 1
    network: bool = False


@dataclass(frozen=True)
class SandboxResult:
    """What happened: ``passed`` when the code exited 0 within its limits."""

    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str

    @property
    def reason(self) -> str:
        """A short description for reports (``passed``, ``timeout``, the last error line...)."""
        if self.passed:
            return "passed"
        if self.timed_out:
            return "timed out"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {signal.Signals(-self.returncode).name}"
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1][:200] if lines else f"exit status {self.returncode}"


def _bootstrap(limits: SandboxLimits) -> str:
    """Code the child runs first: leave the network, then set its own limits.

    Done inside the child rather than in a ``preexec_fn`` (which is unsafe when the parent has
    threads, as an eval under Ray or next to a server does).
    """
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    lines = [
        "import resource as _r, sys as _s",
        "def _lim(which, value):",
        "    try:",
        "        soft, hard = _r.getrlimit(which)",
        "        if hard != _r.RLIM_INFINITY:",
        "            value = min(value, hard)",
        "        _r.setrlimit(which, (value, value))",
        "    except (ValueError, OSError):",
        "        pass",
    ]
    if not limits.network:
        lines += [
            "try:",
            "    import ctypes as _c",
            f"    _c.CDLL(None, use_errno=True).unshare({flags})",
            "    del _c",
            "except OSError:",
            "    pass",
            "_s.modules.pop('ctypes', None)",
        ]
    lines += [
        f"_lim(_r.RLIMIT_CPU, {int(limits.cpu_s)})",
        f"_lim(_r.RLIMIT_AS, {int(limits.memory_mb) * 1024 * 1024})",
        f"_lim(_r.RLIMIT_FSIZE, {int(limits.file_mb) * 1024 * 1024})",
        "_lim(_r.RLIMIT_CORE, 0)",
        f"_lim(_r.RLIMIT_NPROC, {int(limits.processes)})",
        "del _r, _s, _lim",
    ]
    return "\n".join(lines) + "\n"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` with ``python -I`` in a sandboxed subprocess; never raises for bad code."""
    limits = limits or SandboxLimits()
    workdir = Path(tempfile.mkdtemp(prefix="polyfuse-sandbox-"))
    try:
        program = workdir / "main.py"
        body = _bootstrap(limits) + ("" if limits.network else _PRELUDE) + "\n" + code
        program.write_text(body, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(program),
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=limits.timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
            _kill_group(process.pid)
            out, err = await process.communicate()
        finally:
            _kill_group(process.pid)  # whatever it left behind in its group
        returncode = process.returncode
        return SandboxResult(
            passed=returncode == 0 and not timed_out,
            returncode=returncode,
            timed_out=timed_out,
            stdout=out.decode("utf-8", "replace")[-4000:],
            stderr=err.decode("utf-8", "replace")[-4000:],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
