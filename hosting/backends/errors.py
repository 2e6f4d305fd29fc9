"""The project's own hypervisor exceptions. Backends raise only these."""


class BackendError(Exception):
    """A hypervisor operation failed; `message` is fit to show to an admin."""

    transient = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class HostUnreachable(BackendError):
    """The host's hypervisor could not be reached; retrying later may work."""

    transient = True


class DomainNotFound(BackendError):
    pass


class ImageNotAvailable(BackendError):
    pass


class OperationTimeout(BackendError):
    transient = True


class NotSupported(BackendError):
    """The backend (or this host's flavour of it) cannot do what was asked; see its
    `capabilities`. Not transient: asking again will not help."""


class CheckpointMissing(BackendError):
    """An incremental backup was asked from a checkpoint the host no longer has (the
    guest was restored, or its chain was reset): take a full one."""


class HostBusy(BackendError):
    """The host runs as many of these operations as it may at once; try again later."""

    transient = True


class Cancelled(BackendError):
    """The operation was stopped because its job was cancelled (a migration aborted: the
    guest stays where it was)."""
