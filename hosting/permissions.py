"""Who may perform which action: the Django model permission each provider action needs,
and what an API token may do. Which *objects* a caller may touch is hosting/access.py's
business; this module answers "may this caller do this kind of thing at all".

- A customer (a member, signed in or with a customer token) may order servers and ask
  for every registry action that is not the provider's alone (customer_actions()); a
  read token may do nothing.
- A staff session acts as the provider: every action needs its Django permission
  (`Action.permission` for server actions, ACTION_PERMISSIONS for the other jobs),
  `is_staff` alone allows nothing. A superuser has them all.
- A billing token acts as the provider for billing_token_actions() only (the lifecycle
  of customers' servers), and never beyond the permissions of the staff user holding it:
  a token narrows its user, it never widens. It may not change the catalogue (plans,
  images) or hosts; those need a staff session with the model permission.

`caller_may(caller, action)` (or `may_perform(user, action, token=...)`) is the one check:
the services call it (request_action, create_server), so the API, the panel and the admin
actions built from the action registry all get it; the panel and the admin also use it to
offer only what the caller may do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .choices import JobKind, TokenScope

if TYPE_CHECKING:
    from .access import Caller

REFRESH_HOST = "hosting.refresh_host"
# entering and leaving a host's maintenance (not a job: hosting.services.hosts)
HOST_MAINTENANCE = "host_maintenance"

# The Django permission ("app_label.codename") a provider caller needs for the jobs that
# are not server actions; each server action names its own (`Action.permission` in
# hosting/actions.py, where an action is written once).
ACTION_PERMISSIONS: dict[str, str] = {
    JobKind.PROVISION: "hosting.add_server",
    JobKind.HOST_REFRESH: REFRESH_HOST,
    HOST_MAINTENANCE: "hosting.maintain_host",
    JobKind.EVACUATE: "hosting.maintain_host",
}


def customer_actions() -> frozenset[str]:
    """Ordering a server, and every registry action that is not the provider's alone."""
    from .actions import ACTIONS

    return frozenset({JobKind.PROVISION, *(a.kind for a in ACTIONS if not a.provider_only)})


def billing_token_actions() -> frozenset[str]:
    """The lifecycle of customers' servers: ordering, and every registry action."""
    from .actions import ACTIONS

    return frozenset({JobKind.PROVISION, *(a.kind for a in ACTIONS)})


def required_permission(action: str) -> str | None:
    """The Django permission a provider caller needs for `action` (None: no such action)."""
    from .actions import BY_KIND

    if action in ACTION_PERMISSIONS:
        return ACTION_PERMISSIONS[action]
    entry = BY_KIND.get(action)
    return entry.permission if entry is not None else None


def _active(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def may_perform(user: Any, action: str, *, token: Any = None) -> bool:
    """Whether this caller may perform `action` (a JobKind value) at all.

    `token` is the APIToken the caller authenticated with, if any (None for a session).
    """
    if not _active(user):
        return False
    if token is not None:
        if token.scope == TokenScope.BILLING:
            return action in billing_token_actions() and _has_perm(user, action)
        if token.scope == TokenScope.CUSTOMER:
            return action in customer_actions()
        return False
    if user.is_staff:
        return _has_perm(user, action)
    return action in customer_actions()


def caller_may(caller: Caller, action: str) -> bool:
    """may_perform for a service's Caller; Paddock itself (the system) may do anything."""
    return caller.is_system or may_perform(caller.user, action, token=caller.token)


def _has_perm(user: Any, action: str) -> bool:
    perm = required_permission(action)
    return bool(user.is_staff and perm is not None and user.has_perm(perm))


def is_staff_session(user: Any, token: Any = None) -> bool:
    """A signed-in staff user without an API token: who may write the catalogue and hosts
    (each write also needs its model permission)."""
    return _active(user) and bool(user.is_staff) and token is None
