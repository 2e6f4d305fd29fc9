"""The serial console tail of a server, read by a worker and served from the cache.

The web process never talks to a hypervisor: it serves the last tail a worker stored and
asks for a fresh one (at most one request in flight per server) when it is getting old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from ..backends import BackendError, get_backend
from ..models import Server
from . import dispatch

MAX_BYTES = 64 * 1024
KEEP_SECONDS = 3600


@dataclass(frozen=True)
class ConsoleTail:
    text: str
    fetched_at: datetime | None
    error: str = ""


def _key(server: Server) -> str:
    return f"console:{server.uuid}"


def cached_tail(server: Server) -> ConsoleTail:
    value = cache.get(_key(server))
    if value is None:
        return ConsoleTail(text="", fetched_at=None)
    return ConsoleTail(**value)


def request_refresh(server: Server) -> bool:
    """Ask a worker on the server's host for a fresh tail unless one was asked for lately."""
    if server.host is None:
        return False
    if not cache.add(f"{_key(server)}:pending", 1, timeout=settings.CONSOLE_REFRESH_SECONDS):
        return False
    dispatch.send(
        dispatch.FETCH_CONSOLE,
        args=[server.pk],
        queue=server.host.queue,
        expires=settings.CONSOLE_REFRESH_SECONDS * 5,
    )
    return True


def tail(server: Server) -> ConsoleTail:
    """The cached tail, with a refresh requested when it is older than the refresh period."""
    current = cached_tail(server)
    age = (timezone.now() - current.fetched_at).total_seconds() if current.fetched_at else None
    if age is None or age >= settings.CONSOLE_REFRESH_SECONDS:
        request_refresh(server)
    return current


def refresh(server: Server) -> ConsoleTail:
    """Read the tail from the host (in a worker) and store it for the web process."""
    assert server.host is not None
    try:
        text = get_backend(server.host).console_log(server.domain_name, max_bytes=MAX_BYTES)
        result = ConsoleTail(text=text, fetched_at=timezone.now())
    except BackendError as exc:
        previous = cached_tail(server)
        result = ConsoleTail(text=previous.text, fetched_at=timezone.now(), error=exc.message)
    cache.set(_key(server), result.__dict__, timeout=KEEP_SECONDS)
    return result
