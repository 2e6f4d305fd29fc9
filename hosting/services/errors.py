"""Exceptions that services raise; the API and the UI turn them into messages."""


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
