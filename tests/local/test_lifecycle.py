"""No orphans: the server process ends with its parent, however the parent ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
from local_helpers import port_closed, process_gone

pytestmark = pytest.mark.local_model

_PARENT = textwrap.dedent(
    """
    import json, os, signal, sys
    from polyfuse.local import LocalModel

    model = LocalModel(slots=1, ctx_per_slot=512).start()
    print(json.dumps({"pid": model.pid, "url": model.base_url}), flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs at all
    # "exit": leave without calling stop(); the exit hook must stop the server
    """
)


@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_server_dies_with_its_parent(ending: str) -> None:
    parent = subprocess.run(
        [sys.executable, "-c", _PARENT, ending], capture_output=True, text=True, timeout=120
    )
    expected = -signal.SIGKILL if ending == "kill" else 0
    assert parent.returncode == expected, parent.stderr
    info = json.loads(parent.stdout.splitlines()[0])
    assert process_gone(info["pid"], timeout=10.0), f"server {info['pid']} outlived its parent"
    assert port_closed(info["url"])
