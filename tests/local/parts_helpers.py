"""Small fake part wheels, a local package index that serves them, and the pip settings for it.

The fetcher runs the real ``pip download`` against these: a ``--find-links`` folder
(``PIP_FIND_LINKS``) or a PEP 503 index over HTTP on 127.0.0.1 that can cut a file short.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import zipfile
from collections import Counter
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from polyfuse.local import LocalModelSpec, ModelPart


def build_model(
    folder: Path,
    chunks: list[bytes],
    *,
    package: str = "fake_model",
    version: str = "0.1.0",
    name: str = "fake-model",
    compression: int = zipfile.ZIP_DEFLATED,
) -> LocalModelSpec:
    """Write one wheel per chunk into ``folder``; return the catalog entry that pins them."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[ModelPart] = []
    for index, chunk in enumerate(chunks, start=1):
        top = f"{package}_part{index}"
        wheel = folder / f"{top}-{version}-py3-none-any.whl"
        member = f"{top}/data/part{index:02d}.bin"
        info = f"{top}-{version}.dist-info"
        with zipfile.ZipFile(wheel, "w", compression=compression) as archive:
            archive.writestr(f"{top}/__init__.py", "")
            archive.writestr(member, chunk)
            archive.writestr(
                f"{info}/METADATA",
                f"Metadata-Version: 2.1\nName: {top.replace('_', '-')}\nVersion: {version}\n",
            )
            archive.writestr(
                f"{info}/WHEEL",
                "Wheel-Version: 1.0\nGenerator: polyfuse-tests\nRoot-Is-Purelib: true\n"
                "Tag: py3-none-any\n",
            )
            archive.writestr(f"{info}/RECORD", "")
        data = wheel.read_bytes()
        parts.append(
            ModelPart(
                wheel=wheel.name,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                member=member,
            )
        )
    whole = b"".join(chunks)
    return LocalModelSpec(
        name=name,
        served_name=name,
        title=f"Fake model {name}",
        file_name=f"{name}.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        parts=tuple(parts),
    )


def isolate_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignore pip's config files and every index setting of this machine."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "30")


def use_find_links(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make pip take wheels from ``folder`` only (no network)."""
    isolate_pip(monkeypatch)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def leftovers(cache: Path) -> list[str]:
    """Files in the cache other than finished models, their verification stamps and lock
    files (should be none)."""
    found: list[str] = []
    for path in cache.rglob("*"):
        if path.is_dir() or path.suffix in (".lock", ".sha256"):
            continue
        if path.parent == cache and not path.name.startswith("."):
            continue  # a finished model
        found.append(str(path.relative_to(cache)))
    return sorted(found)


@dataclass
class WheelIndex:
    """A PEP 503 index on 127.0.0.1 serving the wheels of a folder."""

    folder: Path
    cut: set[str] = field(default_factory=lambda: set[str]())
    """Wheel names whose body is cut off halfway (the connection then closes)."""
    held: set[str] = field(default_factory=lambda: set[str]())
    """Wheel names whose answer waits until ``release`` is set."""
    release: threading.Event = field(default_factory=threading.Event)
    requests: Counter[str] = field(default_factory=lambda: Counter[str]())
    """How often each wheel file was fetched."""
    url: str = ""


@contextmanager
def serve_index(folder: Path) -> Generator[WheelIndex, None, None]:
    """Serve ``folder``'s wheels as a simple index; yields its state (``url`` set)."""
    index = WheelIndex(folder)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                self._project(parts[1])
            elif len(parts) == 2 and parts[0] == "files":
                self._file(parts[1])
            else:
                self.send_error(404)

        def _project(self, project: str) -> None:
            links = [
                f'<a href="/files/{wheel.name}">{wheel.name}</a>'
                for wheel in sorted(index.folder.glob("*.whl"))
                if wheel.name.split("-")[0].replace("_", "-") == project
            ]
            if not links:
                self.send_error(404)
                return
            body = ("<html><body>" + "".join(links) + "</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, name: str) -> None:
            path = index.folder / name
            if not path.is_file():
                self.send_error(404)
                return
            index.requests[name] += 1
            if name in index.held:
                index.release.wait(timeout=60)
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if name in index.cut:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    try:
        yield index
    finally:
        index.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def use_index(monkeypatch: pytest.MonkeyPatch, index: WheelIndex) -> None:
    """Make pip take wheels from ``index`` only."""
    isolate_pip(monkeypatch)
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
