"""Process and port checks shared by the lifecycle tests."""

from __future__ import annotations

import os
import socket
import time

import httpx


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once no process ``pid`` exists (a zombie awaiting its reaper counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def port_closed(base_url: str) -> bool:
    """True when nothing accepts connections at ``base_url`` any more."""
    try:
        httpx.get(f"{base_url}/models", timeout=2.0)
    except httpx.ConnectError:
        return True
    return False


def busy_port() -> socket.socket:
    """A listening socket on 127.0.0.1 (close it when done); its port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock
