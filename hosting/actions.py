"""The action registry: every action on a server, written once.

An `Action` says what it is called, from which power states it may be asked, who may ask
for it (the customer, or only the provider), what a button for it looks like and which
backend capability it needs. The job that carries it out is the runner of the same kind
(hosting/runners.py). From this one table are built:

- the API routes `POST /api/v1/servers/<uuid>/<slug>/` (hosting/api/views.py),
- the panel's buttons (dashboard/power.py) and the route they post to,
- the admin's bulk actions on servers (hosting/admin.py),
- the check in the service (hosting/services/servers.py `request_action`).

To add an action: a `JobKind` in hosting/choices.py, an entry here, and a runner for that
kind (hosting/services/operations.py). Nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .choices import JobKind, ServerState
from .services.errors import Conflict, NotPermitted

S = ServerState

# Every state a server can be asked to do something in (not while it is being made or
# removed).
SETTLED = frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR, S.UNKNOWN})


@dataclass(frozen=True)
class Action:
    kind: str
    label: str
    icon: str
    style: str
    from_states: frozenset[str]
    # only the provider (staff, billing tokens) may ask; customers never see it
    provider_only: bool = False
    # True: only on a suspended server; False: only on one that is not; None: either
    # (customers can never act on a suspended server)
    suspended: bool | None = None
    confirm: str = ""
    description: str = ""
    # the backend capability the action needs (hosting.backends capabilities), if any
    capability: str | None = None
    # the API route is the detail DELETE (terminate) instead of POST .../<slug>/
    api_delete: bool = False
    # the Django permission a staff user (or the staff user behind a billing token) needs
    # (hosting/permissions.py); customers need none for their own servers
    permission: str = "hosting.power_server"
    # True: a plain action on the server alone, with the generated API route, panel
    # button and admin bulk action; False: one that takes more (a snapshot, a name, a
    # backup) and has its own routes and forms, checked here all the same
    plain: bool = True

    @property
    def slug(self) -> str:
        return self.kind.replace("_", "-")

    @property
    def verb(self) -> str:
        return JobKind(self.kind).label.lower()


ACTIONS: tuple[Action, ...] = (
    Action(JobKind.START, "Start", "play-fill", "success", frozenset({S.STOPPED, S.ERROR})),
    Action(
        JobKind.STOP,
        "Stop",
        "stop-fill",
        "outline-secondary",
        frozenset({S.RUNNING, S.PAUSED}),
        description="Ask the guest to shut down (ACPI); forced off after the shutdown timeout.",
    ),
    Action(
        JobKind.REBOOT,
        "Reboot",
        "arrow-clockwise",
        "outline-secondary",
        frozenset({S.RUNNING}),
        confirm="Reboot {hostname}?",
    ),
    Action(
        JobKind.FORCE_STOP,
        "Force stop",
        "power",
        "outline-warning",
        frozenset({S.RUNNING, S.PAUSED, S.ERROR}),
        confirm="Force {hostname} off? Unsaved data in the guest is lost.",
    ),
    Action(
        JobKind.PAUSE,
        "Pause",
        "pause-fill",
        "outline-secondary",
        frozenset({S.RUNNING}),
        description="Freeze the guest in memory (its CPUs stop).",
        capability="pause",
    ),
    Action(
        JobKind.RESUME,
        "Resume",
        "play-fill",
        "success",
        frozenset({S.PAUSED}),
        capability="pause",
    ),
    Action(
        JobKind.SUSPEND,
        "Suspend",
        "slash-circle",
        "outline-danger",
        SETTLED,
        provider_only=True,
        suspended=False,
        permission="hosting.suspend_server",
        confirm="Suspend {hostname}? It is shut down and its customer locked out.",
        description="The provider's suspension: the guest is shut down and the customer "
        "can no longer act on it.",
    ),
    Action(
        JobKind.UNSUSPEND,
        "Unsuspend",
        "play-circle",
        "outline-success",
        SETTLED,
        provider_only=True,
        suspended=True,
        permission="hosting.suspend_server",
        description="Lift the provider's suspension and start the server.",
    ),
    Action(
        JobKind.MIGRATE,
        "Migrate",
        "arrow-left-right",
        "outline-secondary",
        frozenset({S.RUNNING, S.STOPPED, S.PAUSED}),
        provider_only=True,
        permission="hosting.migrate_server",
        description="Move the server to another host: live when it runs (a pause of "
        "milliseconds), offline with its disks when it is stopped. The API takes an optional "
        "`target_host` (a host name; chosen by placement when absent) and `live`.",
    ),
    Action(
        JobKind.TERMINATE,
        "Terminate",
        "trash3",
        "outline-danger",
        frozenset({S.PENDING, S.PROVISIONING, *SETTLED}),
        confirm="Terminate {hostname}? The server and its disks are deleted for good.",
        description="Delete the server, its disks and its addresses.",
        api_delete=True,
        permission="hosting.terminate_server",
    ),
)

# Snapshots and backups (hosting/services/snapshots.py and backups.py): their own routes
# under the server (API) and their own panel section; the checks are the registry's.
ON_HOST = frozenset({S.RUNNING, S.STOPPED, S.PAUSED})
ACTIONS += (
    Action(
        JobKind.SNAPSHOT_CREATE,
        "Take snapshot",
        "camera",
        "outline-primary",
        ON_HOST,
        capability="snapshots",
        permission="hosting.snapshot_server",
        plain=False,
        description="Snapshot the server's disk (and its memory, when it runs).",
    ),
    Action(
        JobKind.SNAPSHOT_REVERT,
        "Revert",
        "arrow-counterclockwise",
        "outline-warning",
        frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR}),
        capability="snapshots",
        permission="hosting.snapshot_server",
        plain=False,
        confirm="Revert {hostname} to this snapshot? The server is forced off; what was "
        "written since, and the snapshots taken after it, are lost.",
    ),
    Action(
        JobKind.SNAPSHOT_DELETE,
        "Delete",
        "trash3",
        "outline-danger",
        frozenset({S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR}),
        capability="snapshots",
        permission="hosting.snapshot_server",
        plain=False,
        confirm="Delete this snapshot of {hostname}? The server's current disk is kept.",
    ),
    Action(
        JobKind.BACKUP,
        "Back up now",
        "cloud-arrow-up",
        "outline-primary",
        ON_HOST,
        capability="backup",
        permission="hosting.backup_server",
        plain=False,
        description="Back up the server's disk to the backup store (incremental when "
        "the chain allows).",
    ),
    Action(
        JobKind.BACKUP_VERIFY,
        "Verify",
        "patch-check",
        "outline-secondary",
        frozenset(ServerState),  # reads the store only: also for deleted servers
        permission="hosting.backup_server",
        plain=False,
    ),
    Action(
        JobKind.BACKUP_RESTORE,
        "Restore",
        "cloud-arrow-down",
        "outline-danger",
        frozenset({S.STOPPED}),
        capability="backup",
        permission="hosting.backup_server",
        plain=False,
        confirm="Restore {hostname} from this backup? Its disk and snapshots are replaced.",
    ),
)
PLAIN_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.plain)

BY_KIND: dict[str, Action] = {a.kind: a for a in ACTIONS}
BY_SLUG: dict[str, Action] = {a.slug: a for a in PLAIN_ACTIONS}


class IllegalAction(Conflict):
    """An action that the server's state or the caller does not allow (HTTP 409)."""


def get_action(kind: str) -> Action:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise IllegalAction(f"Unknown action {kind!r}.") from None


def require_permitted(action: Action, *, provider: bool) -> None:
    """Customers may not ask for the provider's actions at all (403, not 409)."""
    if action.provider_only and not provider:
        raise NotPermitted(f"Only the provider can {action.verb} a server.")


def refusal(
    action: Action,
    *,
    state: str,
    suspended: bool,
    provider: bool,
    capabilities: frozenset[str] | None = None,
) -> str | None:
    """Why this action cannot be asked now, or None when it can. `capabilities` are the
    server's backend's (None: not known here, not checked)."""
    if action.provider_only and not provider:
        return f"Only the provider can {action.verb} a server."
    if suspended and not provider:
        return "This server is suspended by the provider."
    if action.suspended is True and not suspended:
        return "This server is not suspended."
    if action.suspended is False and suspended:
        return "This server is already suspended."
    if state not in action.from_states:
        return f"Cannot {action.verb} a server that is {state}."
    if capabilities is not None and action.capability and action.capability not in capabilities:
        return f"This server's hypervisor cannot {action.verb} a server."
    return None


def refuse(action: Action, server, *, provider: bool) -> None:
    """Raise IllegalAction when `action` cannot be asked on `server` now."""
    from .backends import capabilities_of

    reason = refusal(
        action,
        state=server.state,
        suspended=server.suspended,
        provider=provider,
        capabilities=capabilities_of(server.host) if server.host is not None else None,
    )
    if reason:
        raise IllegalAction(reason)


def available(
    *,
    state: str,
    suspended: bool,
    provider: bool,
    capabilities: frozenset[str] | None = None,
) -> list[Action]:
    """The actions that may be asked now, in the registry's order."""
    return [
        a
        for a in PLAIN_ACTIONS
        if refusal(
            a, state=state, suspended=suspended, provider=provider, capabilities=capabilities
        )
        is None
    ]
