"""The server state machine: every legal transition, written once.

Services ask `can_transition` / `require_transition` before they change a server's state;
an illegal request becomes `IllegalTransition`, which the API answers with 409.
"""

from __future__ import annotations

from .choices import JobKind, ServerState

S = ServerState

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.ERROR, S.TERMINATING}),
    S.PROVISIONING: frozenset({S.RUNNING, S.STOPPED, S.ERROR, S.TERMINATING}),
    S.RUNNING: frozenset({S.STOPPED, S.PAUSED, S.SUSPENDED, S.ERROR, S.UNKNOWN, S.TERMINATING}),
    S.STOPPED: frozenset({S.RUNNING, S.SUSPENDED, S.ERROR, S.UNKNOWN, S.TERMINATING}),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPED, S.SUSPENDED, S.ERROR, S.UNKNOWN, S.TERMINATING}),
    S.SUSPENDED: frozenset({S.STOPPED, S.RUNNING, S.ERROR, S.UNKNOWN, S.TERMINATING}),
    S.ERROR: frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.UNKNOWN, S.TERMINATING}),
    # a server whose host cannot be reached: whatever the host says when it is back
    S.UNKNOWN: frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR, S.SUSPENDED, S.TERMINATING}),
    S.TERMINATING: frozenset({S.TERMINATED, S.ERROR}),
    S.TERMINATED: frozenset(),
}

# Which states a server must be in for an action to be accepted.
ACTION_FROM_STATES: dict[str, frozenset[str]] = {
    JobKind.START: frozenset({S.STOPPED, S.ERROR}),
    JobKind.STOP: frozenset({S.RUNNING, S.PAUSED}),
    JobKind.FORCE_STOP: frozenset({S.RUNNING, S.PAUSED, S.ERROR}),
    JobKind.REBOOT: frozenset({S.RUNNING}),
    # pause freezes the guest in memory (libvirt suspend); resume thaws it
    JobKind.PAUSE: frozenset({S.RUNNING}),
    JobKind.RESUME: frozenset({S.PAUSED}),
    # suspend is the provider's (billing) suspension: the guest is shut down and locked
    JobKind.SUSPEND: frozenset({S.RUNNING, S.STOPPED, S.PAUSED}),
    JobKind.UNSUSPEND: frozenset({S.SUSPENDED}),
    JobKind.TERMINATE: frozenset(
        {S.PENDING, S.PROVISIONING, S.RUNNING, S.STOPPED, S.PAUSED, S.SUSPENDED, S.ERROR, S.UNKNOWN}
    ),
}

POWER_ACTIONS = (
    JobKind.START,
    JobKind.STOP,
    JobKind.FORCE_STOP,
    JobKind.REBOOT,
    JobKind.PAUSE,
    JobKind.RESUME,
    JobKind.SUSPEND,
    JobKind.UNSUSPEND,
)


class IllegalTransition(Exception):
    """A state change or action that the state machine does not allow."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def can_transition(current: str, target: str) -> bool:
    return current == target or target in TRANSITIONS.get(current, frozenset())


def require_transition(current: str, target: str) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(f"A server cannot go from {current} to {target}.")


def require_action(current: str, action: str) -> None:
    allowed = ACTION_FROM_STATES.get(action)
    if allowed is None or current not in allowed:
        label = JobKind(action).label.lower()
        raise IllegalTransition(f"Cannot {label} a server that is {current}.")
