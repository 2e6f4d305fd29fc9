"""Exceptions that services raise; the API and the UI turn them into messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError

from ..backends.errors import BackendError


class ServiceError(Exception):
    """A request that cannot be carried out as asked (shown to the caller as bad input)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Conflict(ServiceError):
    """A request that conflicts with the current state (HTTP 409)."""


class NoCapacity(ServiceError):
    """No host can take the server."""


class PoolExhausted(ServiceError):
    """No free address is left in the pools that serve the host."""


class NotPermitted(ServiceError):
    """The caller may not ask for this at all (HTTP 403), whatever the state."""


class DatabaseBusy(BackendError):
    """The database did not answer in time ("database is locked" on SQLite, a lock or
    statement timeout or a lost connection on PostgreSQL). Transient: the job runner
    retries a transient BackendError with backoff (hosting/runners.py)."""

    transient = True


@contextmanager
def database_errors_are_transient() -> Iterator[None]:
    """Turn the database's OperationalError into DatabaseBusy, for work that a job runner
    retries (a worker's writes)."""
    try:
        yield
    except OperationalError as exc:
        raise DatabaseBusy(f"The database was busy: {exc}") from exc
