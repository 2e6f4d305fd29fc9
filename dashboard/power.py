"""The action buttons of a server page, built from the action registry.

Which buttons show comes from hosting/actions.py, the same entries and the same check
(`available`) that the service enforces, so the page never offers a button that the
service would refuse, and a new action gets its button without an edit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from hosting.access import Caller
from hosting.actions import BY_SLUG, Action, available
from hosting.backends import capabilities_of
from hosting.choices import JobKind
from hosting.models import Server
from hosting.permissions import caller_may

__all__ = ["BY_SLUG", "BoundButton", "power_buttons", "terminate_button"]


@dataclass(frozen=True)
class BoundButton:
    """A button for one server: where it posts and what it asks before."""

    action: Action
    server: Server

    @property
    def url(self) -> str:
        return reverse(
            "dashboard:server-action",
            kwargs={"uuid": self.server.uuid, "action": self.action.slug},
        )

    @property
    def confirm(self) -> str:
        return self.action.confirm.format(hostname=self.server.hostname)

    def __getattr__(self, name: str):
        return getattr(self.action, name)


def _offered(server: Server, caller: Caller) -> list[Action]:
    access = caller.access
    if not access.can_write:
        return []
    actions = available(
        state=server.state,
        suspended=server.suspended,
        provider=access.all_customers,
        capabilities=capabilities_of(server.host) if server.host is not None else None,
    )
    # staff see only what their Django permissions allow (hosting/permissions.py)
    return [a for a in actions if caller_may(caller, a.kind)]


def power_buttons(server: Server, caller: Caller) -> list[BoundButton]:
    """The buttons to show: permitted for this caller and legal in the server's state."""
    return [BoundButton(a, server) for a in _offered(server, caller) if a.kind != JobKind.TERMINATE]


def terminate_button(server: Server, caller: Caller) -> BoundButton | None:
    for a in _offered(server, caller):
        if a.kind == JobKind.TERMINATE:
            return BoundButton(a, server)
    return None
