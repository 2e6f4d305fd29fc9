"""The server state machine: every legal transition of the power state, written once.

Workers ask `require_transition` before they record a state; which actions may be asked
in which state is the action registry's (hosting/actions.py). The provider's suspension
is not a state but a flag beside it (`Server.suspended`).
"""

from __future__ import annotations

from .choices import ServerState

S = ServerState

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.ERROR, S.TERMINATING}),
    S.PROVISIONING: frozenset({S.RUNNING, S.STOPPED, S.ERROR, S.TERMINATING}),
    S.RUNNING: frozenset({S.STOPPED, S.PAUSED, S.ERROR, S.UNKNOWN, S.TERMINATING, S.MIGRATING}),
    S.STOPPED: frozenset({S.RUNNING, S.ERROR, S.UNKNOWN, S.TERMINATING, S.MIGRATING}),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPED, S.ERROR, S.UNKNOWN, S.TERMINATING, S.MIGRATING}),
    # moving to another host: back to what it was (on either host), or what the host says
    S.MIGRATING: frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR, S.UNKNOWN}),
    S.ERROR: frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.UNKNOWN, S.TERMINATING}),
    # a server whose host cannot be reached: whatever the host says when it is back
    S.UNKNOWN: frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR, S.TERMINATING}),
    S.TERMINATING: frozenset({S.TERMINATED, S.ERROR}),
    S.TERMINATED: frozenset(),
}


class IllegalTransition(Exception):
    """A state change that the state machine does not allow."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def can_transition(current: str, target: str) -> bool:
    return current == target or target in TRANSITIONS.get(current, frozenset())


def require_transition(current: str, target: str) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(f"A server cannot go from {current} to {target}.")
