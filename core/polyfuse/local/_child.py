"""The embedded server's process: ``python -m polyfuse.local._child '<json config>'``.

It starts llama.cpp's server (xllamacpp) on 127.0.0.1, writes one JSON line to stdout —
``{"address": "http://127.0.0.1:PORT"}`` or ``{"error": "...", "kind": "..."}`` — and then
serves until its stdin reaches end-of-file, which happens when the parent closes the pipe
(:meth:`LocalModel.stop`) or dies for any reason. A watchdog thread also exits when the parent
process changes (the pipe may stay open in a forked grandchild). The process ends with
``os._exit``: llama.cpp's server destructor can block while requests are in flight, and the
operating system releases the port, threads and memory at once.

Why a child process: an in-process ``xllamacpp.Server`` holds the GIL for the whole model load
(~1 s, which freezes an event loop) and its destructor deadlocks when a request is in flight,
so it cannot be stopped reliably.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, TextIO

_WATCH_INTERVAL_S = 0.5


def _report_channel() -> TextIO:
    """A private copy of stdout for the one report line; stdout itself then goes to stderr
    (the parent's log), so nothing llama.cpp prints can fill or garble the report pipe."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return channel


def _report(channel: TextIO, message: dict[str, Any]) -> None:
    with channel:  # closing it tells the parent there is nothing more to read
        channel.write(json.dumps(message) + "\n")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_WATCH_INTERVAL_S)
        if os.getppid() != parent:
            os._exit(0)


def _port_problem(port: int) -> str | None:
    """Why ``port`` cannot be bound on 127.0.0.1, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _params(xllamacpp: Any, config: dict[str, Any]) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = config["model"]
    params.model_alias = {config["alias"]}  # a set: a plain string would become its letters
    params.hostnames = ["127.0.0.1"]
    params.port = config["port"]
    params.n_parallel = config["slots"]
    params.n_ctx = config["slots"] * config["ctx_per_slot"]
    params.cpuparams.n_threads = config["threads"]
    params.cpuparams_batch.n_threads = config["threads"]
    params.cache_ram_mib = 0  # no host-memory prompt cache: memory stays bounded
    params.verbosity = 0  # llama.cpp logs only errors (to stderr, which the parent keeps)
    if config["embeddings"]:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        # one KV buffer for all slots: with a KV cache per slot, llama.cpp splits the texts of
        # one request over the slots and a text's vector changed with the texts beside it
        # (cosine 0.83-0.93 against the same text alone, measured with 2-4 slots)
        params.kv_unified = True
        # llama.cpp's embedding mode splits a micro-batch equally over the slots and aborts
        # (GGML_ASSERT in ggml_can_mul_mat) unless n_ubatch is a multiple of n_parallel: with
        # the default 512, any slot count that is not a power of two crashed the server.
        slots = config["slots"]
        params.n_ubatch = -(-params.n_ubatch // slots) * slots
        params.n_batch = max(params.n_batch, params.n_ubatch)
    return params


def main(argv: list[str]) -> int:
    """Run the server until stdin closes; the exit status is 0, or 1 when it cannot start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    config: dict[str, Any] = json.loads(argv[0])
    channel = _report_channel()
    try:
        # A compiled extension that star-imports its names: typed as Any.
        xllamacpp: Any = importlib.import_module("xllamacpp")
    except ImportError as exc:
        _report(channel, {"kind": "import", "error": str(exc)})
        return 1
    problem = _port_problem(config["port"])
    if problem is not None:
        _report(channel, {"kind": "port", "error": problem})
        return 1
    try:
        server = xllamacpp.Server(_params(xllamacpp, config))
    except RuntimeError as exc:
        _report(channel, {"kind": "load", "error": str(exc)})
        return 1
    _report(channel, {"address": server.listening_address})
    sys.stdin.buffer.read()  # blocks until the parent closes the pipe or dies
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
