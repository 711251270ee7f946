"""The benchmark harness: a simulated server, the contenders, measurement loops and reports.

Every figure runs each contender in its own worker process against a simulated
OpenAI-compatible server running in another process (or against any server given by
``--base-url``), so that client CPU, latency and memory are the contender's alone.
"""

from __future__ import annotations

from .contenders import CONTENDERS, PEERS, Contender, ContenderUnavailable
from .runner import run_worker
from .simserver import ServerSpec, SimServers
from .stats import mean, percentile, ratio
from .workload import DEFAULT_PROMPT, Workload

__all__ = [
    "CONTENDERS",
    "DEFAULT_PROMPT",
    "PEERS",
    "Contender",
    "ContenderUnavailable",
    "ServerSpec",
    "SimServers",
    "Workload",
    "mean",
    "percentile",
    "ratio",
    "run_worker",
]
