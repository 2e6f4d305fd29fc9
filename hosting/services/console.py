"""The serial console tail of a server, read by a worker and served from the cache.

The web process never talks to a hypervisor: it serves the last tail a worker stored and
asks for a fresh one (at most one request in flight per server) when it is getting old.
While a server page is open its socket asks every CONSOLE_REFRESH_SECONDS
(`request_refresh_of`), and each read that changed something is pushed to the server's
group as `console.tail` (`tail_message`): what was appended, or the whole tail when it
cannot be told apart from a new one (`reset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from ..backends import BackendError, get_backend
from ..models import Server
from . import dispatch
from .events import send_many, server_group
from .public_messages import customer_message

MAX_BYTES = 64 * 1024
KEEP_SECONDS = 3600
# how much of the previous tail must be found again in a new one for the rest to count as
# appended (a tail of MAX_BYTES slides: its start moves as the console prints)
ANCHOR = 256


@dataclass(frozen=True)
class ConsoleTail:
    text: str
    fetched_at: datetime | None
    error: str = ""


def _key(server: Server) -> str:
    return f"console:{server.uuid}"


def _pending_key(server_uuid: Any) -> str:
    return f"console:{server_uuid}:pending"


def cached_tail(server: Server) -> ConsoleTail:
    value = cache.get(_key(server))
    if value is None:
        return ConsoleTail(text="", fetched_at=None)
    return ConsoleTail(**value)


def request_refresh(server: Server) -> bool:
    """Ask a worker on the server's host for a fresh tail unless one was asked for lately."""
    if server.host is None:
        return False
    if not cache.add(_pending_key(server.uuid), 1, timeout=settings.CONSOLE_REFRESH_SECONDS):
        return False
    dispatch.send(
        dispatch.FETCH_CONSOLE,
        args=[server.pk],
        queue=server.host.queue,
        expires=settings.CONSOLE_REFRESH_SECONDS * 5,
    )
    return True


def request_refresh_of(server_uuid: Any) -> bool:
    """`request_refresh` by the server's uuid (a socket keeps no row): one query, made only
    when no refresh was asked for lately."""
    if cache.get(_pending_key(server_uuid)):
        return False
    server = Server.objects.select_related("host").filter(uuid=server_uuid).first()
    return server is not None and request_refresh(server)


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
    previous = cached_tail(server)
    try:
        text = get_backend(server.host).console_log(server.domain_name, max_bytes=MAX_BYTES)
        result = ConsoleTail(text=text, fetched_at=timezone.now())
    except BackendError as exc:
        result = ConsoleTail(text=previous.text, fetched_at=timezone.now(), error=exc.message)
    store(server, result, previous=previous)
    return result


def store(server: Server, current: ConsoleTail, *, previous: ConsoleTail) -> None:
    """Keep a fresh read for the web process and push what changed to the open pages."""
    cache.set(_key(server), current.__dict__, timeout=KEEP_SECONDS)
    first = previous.fetched_at is None  # even an empty first read ends "Reading…"
    if first or (current.text, current.error) != (previous.text, previous.error):
        send_many([(server_group(server.uuid), tail_message(server, current, previous=previous))])


def current_message(server_uuid: Any) -> dict[str, Any] | None:
    """The whole cached tail as a `console.tail` (a refresh asked for when it is old);
    None for a server that is gone."""
    server = Server.objects.select_related("host").filter(uuid=server_uuid).first()
    if server is None:
        return None
    return tail_message(server, tail(server))


def tail_message(
    server: Server, current: ConsoleTail, *, previous: ConsoleTail | None = None
) -> dict[str, Any]:
    """The socket's `console.tail`: the text appended since `previous`, or with `reset`
    the whole tail. The error is the customer's wording (no host names): the group is
    shared by the customer's and staff's sockets."""
    text, reset = current.text, True
    before = previous.text if previous is not None else ""
    if before and current.text.startswith(before):
        text, reset = current.text[len(before) :], False
    elif before:
        # the window slid: the end of the old tail, found once and only once in the new
        anchor = before[-ANCHOR:]
        at = current.text.find(anchor)
        if at >= 0 and at == current.text.rfind(anchor):
            text, reset = current.text[at + len(anchor) :], False
    hosts = [server.host.name] if server.host else []
    message = {
        "type": "console.tail",
        "server": str(server.uuid),
        "text": text,
        "reset": reset,
        "at": _stamp(current),
        "error": customer_message(current.error, hosts=hosts) if current.error else "",
    }
    if not reset:
        # an append applies only to the tail it was computed from: a browser holding
        # another asks for the whole tail again
        message["since"] = _stamp(previous)
    return message


def _stamp(tail: ConsoleTail | None) -> str:
    return tail.fetched_at.isoformat() if tail is not None and tail.fetched_at else ""
