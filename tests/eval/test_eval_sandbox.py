"""The code sandbox stops loops, forks, memory bombs and network access, and cleans up."""

from __future__ import annotations

import os
import tempfile

import pytest

from polyfuse.eval import SandboxLimits, run_python

LIMITS = SandboxLimits(timeout_s=3, cpu_s=3, memory_mb=256)


async def test_ordinary_code_runs_and_passes() -> None:
    result = await run_python("print(sum(range(10)))", LIMITS)
    assert result.passed and result.stdout.strip() == "45"


async def test_an_infinite_loop_is_killed() -> None:
    result = await run_python("while True:\n    pass\n", LIMITS)
    assert not result.passed
    assert result.timed_out or (result.returncode is not None and result.returncode < 0)


async def test_a_sleeping_process_is_killed_at_the_wall_clock_limit() -> None:
    result = await run_python("import time\ntime.sleep(60)\n", SandboxLimits(timeout_s=1))
    assert result.timed_out and result.reason == "timed out"


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()\n",
        "import posix\nposix.fork()\n",
        "import subprocess\nsubprocess.run(['echo', 'hi'])\n",
        "import os\nos.system('echo hi')\n",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
        "import ctypes\nctypes.CDLL(None).fork()\n",
    ],
)
async def test_forks_and_child_processes_are_refused(code: str) -> None:
    result = await run_python(code, LIMITS)
    assert not result.passed
    assert "blocked" in result.stderr or "halted" in result.stderr


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(10 ** 10)\n",
        "chunks = []\nwhile True:\n    chunks.append(' ' * 10 ** 7)\n",
    ],
)
async def test_memory_bombs_fail(code: str) -> None:
    result = await run_python(code, LIMITS)
    assert not result.passed
    assert "MemoryError" in result.stderr or result.returncode != 0


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n",
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n",
        "import _socket\n_socket.socket()\n",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9', timeout=1)\n",
    ],
)
async def test_sockets_cannot_be_opened(code: str) -> None:
    result = await run_python(code, LIMITS)
    assert not result.passed
    assert any(w in result.stderr for w in ("blocked", "halted", "unreachable", "Error"))


async def test_the_temp_dir_is_removed_and_the_environment_is_empty() -> None:
    os.environ["POLYFUSE_SANDBOX_SECRET"] = "s3cret"
    try:
        result = await run_python(
            "import os\nprint(os.getcwd())\nprint(os.environ.get('POLYFUSE_SANDBOX_SECRET'))\n",
            LIMITS,
        )
    finally:
        del os.environ["POLYFUSE_SANDBOX_SECRET"]
    workdir, secret = result.stdout.split()
    assert secret == "None"
    assert not os.path.exists(workdir)
    assert workdir.startswith(tempfile.gettempdir())


async def test_past_the_prelude_the_network_namespace_has_no_route() -> None:
    code = (
        "import sys\ndel sys.modules['_socket']\nimport _socket\n"
        "s = _socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', 9))\n"
    )
    result = await run_python(code, LIMITS)
    assert not result.passed
    if "refused" in result.reason:
        pytest.skip(
            "this kernel does not allow a network namespace here (the prelude still blocks)"
        )
    assert "unreachable" in result.reason


async def test_limits_are_set_inside_the_child() -> None:
    code = "import resource\nprint(*resource.getrlimit(resource.RLIMIT_AS), *resource.getrlimit(resource.RLIMIT_CPU))"
    result = await run_python(code, SandboxLimits(timeout_s=5, memory_mb=300, cpu_s=4))
    assert result.stdout.split() == [str(300 * 1024 * 1024)] * 2 + ["4", "4"]
