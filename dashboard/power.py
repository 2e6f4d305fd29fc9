"""The power buttons of a server page: which ones a user may press in which state.

Legality comes from hosting.states.ACTION_FROM_STATES, the same table the services
enforce, so the page never offers a button that the service would refuse with 409.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from hosting.access import Access
from hosting.choices import JobKind
from hosting.models import Server
from hosting.states import ACTION_FROM_STATES


@dataclass(frozen=True)
class PowerButton:
    kind: str
    label: str
    icon: str
    style: str
    confirm: str = ""
    staff_only: bool = False

    @property
    def slug(self) -> str:
        return self.kind.replace("_", "-")


BUTTONS: tuple[PowerButton, ...] = (
    PowerButton(JobKind.START, "Start", "play-fill", "success"),
    PowerButton(JobKind.STOP, "Stop", "stop-fill", "outline-secondary"),
    PowerButton(
        JobKind.REBOOT,
        "Reboot",
        "arrow-clockwise",
        "outline-secondary",
        confirm="Reboot {hostname}?",
    ),
    PowerButton(
        JobKind.FORCE_STOP,
        "Force stop",
        "power",
        "outline-warning",
        confirm="Force {hostname} off? Unsaved data in the guest is lost.",
    ),
    PowerButton(JobKind.PAUSE, "Pause", "pause-fill", "outline-secondary"),
    PowerButton(JobKind.RESUME, "Resume", "play-fill", "success"),
    PowerButton(JobKind.SUSPEND, "Suspend", "pause-circle", "outline-danger", staff_only=True),
    PowerButton(JobKind.UNSUSPEND, "Unsuspend", "play-circle", "outline-success", staff_only=True),
)
TERMINATE = PowerButton(
    JobKind.TERMINATE,
    "Terminate",
    "trash3",
    "outline-danger",
    confirm="Terminate {hostname}? The server and its disks are deleted for good.",
)
BY_SLUG: dict[str, PowerButton] = {b.slug: b for b in (*BUTTONS, TERMINATE)}


def permitted(button: PowerButton, access: Access) -> bool:
    return access.can_write and (access.is_staff or not button.staff_only)


def legal(button: PowerButton, server: Server) -> bool:
    return server.state in ACTION_FROM_STATES.get(button.kind, frozenset())


@dataclass(frozen=True)
class BoundButton:
    """A button for one server: where it posts and what it asks before."""

    button: PowerButton
    server: Server

    @property
    def url(self) -> str:
        return reverse(
            "dashboard:server-action",
            kwargs={"uuid": self.server.uuid, "action": self.button.slug},
        )

    @property
    def confirm(self) -> str:
        return self.button.confirm.format(hostname=self.server.hostname)

    def __getattr__(self, name: str):
        return getattr(self.button, name)


def power_buttons(server: Server, access: Access) -> list[BoundButton]:
    """The buttons to show: permitted for this user and legal in the server's state."""
    return [BoundButton(b, server) for b in BUTTONS if permitted(b, access) and legal(b, server)]


def terminate_button(server: Server, access: Access) -> BoundButton | None:
    if permitted(TERMINATE, access) and legal(TERMINATE, server):
        return BoundButton(TERMINATE, server)
    return None
