"""libvirt connections: one per URI and process, opened with a time limit, kept alive.

- One lock per URI: a host whose libvirtd does not answer holds up only the callers of
  that host, never another host's jobs.
- A connect that gets no answer within `timeout` seconds raises `HostUnreachable` (an
  unreachable address would otherwise block for the kernel's TCP timeout, or for ever on
  a daemon that accepts and never speaks). The abandoned attempt finishes in its thread
  and closes what it opened.
- Keepalive: libvirt's event loop runs in a daemon thread of the process, and every
  remote connection pings its daemon; one that stops answering is closed by libvirt, so
  calls on it fail (HostUnreachable) instead of hanging, and the next call reconnects.
- A forked child (Celery's prefork pool) starts with no connection and its own loop.

libvirt's test driver keeps its state inside the process that opened it: it is opened in
the caller's thread and cached like the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import libvirt

from .errors import BackendError, DomainNotFound, HostUnreachable

log = logging.getLogger(__name__)

# libvirt prints every error to stderr by default; we raise ours instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

DEFAULT_CONNECT_TIMEOUT = 15.0
# a ping every KEEPALIVE_INTERVAL s; the connection is closed after KEEPALIVE_COUNT
# unanswered ones (about 15 s for a host that vanished)
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

_UNREACHABLE_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
}


# what libvirt says when the connection ended under a call: the keepalive found the host
# silent, or the daemon went away (its socket closed) after the cached connection was
# last seen alive
_CLOSED_TEXTS = ("connection closed", "client socket is closed")


def _closed(code: int, text: str) -> bool:
    return code == libvirt.VIR_ERR_INTERNAL_ERROR and any(t in text for t in _CLOSED_TEXTS)


@contextlib.contextmanager
def translated(what: str, uri: str) -> Iterator[None]:
    """Turn libvirt errors into the project's exceptions, with a message for humans."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        text = exc.get_error_message() or str(exc)
        if code == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainNotFound(f"{what}: no such domain on {uri}.") from exc
        if code in _UNREACHABLE_CODES or _closed(code, text):
            raise HostUnreachable(f"{what}: cannot reach {uri}: {text}") from exc
        raise BackendError(f"{what} failed on {uri}: {text}") from exc


# --- the event loop (keepalive needs one) ---------------------------------------------------
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # a loop that dies would silently end every keepalive
            log.exception("libvirt event loop")
            time.sleep(1)


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread,
    once per process (before the first remote connection is opened)."""
    global _loop_pid
    if _loop_pid == os.getpid():
        return
    with _loop_lock:
        if _loop_pid == os.getpid():
            return
        if _loop_pid is None:
            libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _loop_pid = os.getpid()


# --- the connection cache -------------------------------------------------------------------
class _Slot:
    """The cached connection of one URI and the lock that serializes (re)connecting."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: libvirt.virConnect | None = None


_slots: dict[str, _Slot] = {}
_slots_lock = threading.Lock()  # held only to find or add a slot, never while connecting
_slots_pid = os.getpid()


def _slot(uri: str) -> _Slot:
    global _slots_pid
    with _slots_lock:
        if _slots_pid != os.getpid():  # a forked child: the parent's connections are not ours
            _slots.clear()
            _slots_pid = os.getpid()
        slot = _slots.get(uri)
        if slot is None:
            slot = _slots[uri] = _Slot()
        return slot


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def connect(uri: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> libvirt.virConnect:
    """The process's connection to `uri`, (re)opened when needed."""
    slot = _slot(uri)
    if not slot.lock.acquire(timeout=timeout):
        raise HostUnreachable(
            f"connect: cannot reach {uri}: an earlier connection attempt is still "
            f"waiting for an answer (more than {timeout:g} s)."
        )
    try:
        conn = slot.conn
        if conn is not None:
            if _alive(conn):
                return conn
            slot.conn = None
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        slot.conn = _open(uri, timeout)
        return slot.conn
    finally:
        slot.lock.release()


def forget(uri: str) -> None:
    """Drop the cached connection of `uri` (the next call reconnects)."""
    slot = _slot(uri)
    with slot.lock:
        conn, slot.conn = slot.conn, None
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class _Attempt:
    """One libvirt.open() in a thread of its own, which the caller may abandon."""

    def __init__(self, uri: str):
        self.uri = uri
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.conn: libvirt.virConnect | None = None
        self.error: libvirt.libvirtError | None = None

    def run(self) -> None:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            with self.lock:
                self.error = exc
        else:
            with self.lock:
                if self.abandoned:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
                else:
                    self.conn = conn
        finally:
            self.done.set()


def _open(uri: str, timeout: float) -> libvirt.virConnect:
    if uri.startswith("test:"):
        with translated("connect", uri):
            return libvirt.open(uri)  # in-process: nothing to wait for, nothing to ping
    ensure_event_loop()
    attempt = _Attempt(uri)
    threading.Thread(target=attempt.run, name=f"libvirt-connect {uri}", daemon=True).start()
    attempt.done.wait(timeout)
    with attempt.lock:
        if attempt.conn is None and attempt.error is None:
            attempt.abandoned = True
            raise HostUnreachable(f"connect: cannot reach {uri}: no answer within {timeout:g} s.")
    if attempt.error is not None:
        with translated("connect", uri):
            raise attempt.error
    conn = attempt.conn
    assert conn is not None
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    except libvirt.libvirtError as exc:  # a driver without keepalive: still usable
        log.info("no keepalive on %s: %s", uri, exc.get_error_message())
    return conn
