from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import models

from ..choices import GroupRule, ServerState
from ..querysets import ServerQuerySet
from .catalog import Image, Plan
from .customers import Customer, SSHKey
from .hosts import Host

# RFC 1123 host name: labels of letters, digits and inner hyphens, 63 characters each.
HOSTNAME_PATTERN = re.compile(
    r"(?=.{1,253}\Z)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
)


def validate_hostname(value: str) -> None:
    """The whole value must be a host name: a full match, so no trailing newline either."""
    if not isinstance(value, str) or HOSTNAME_PATTERN.fullmatch(value) is None:
        raise ValidationError(
            "Use letters, digits and hyphens (no leading or trailing hyphen), "
            "with dots between labels of at most 63 characters.",
            code="invalid",
        )


hostname_validator = validate_hostname


class Server(models.Model):
    """A VPS. Its `state` changes only through hosting.states and the services."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="servers")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="servers")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="servers")
    host = models.ForeignKey(
        Host, on_delete=models.PROTECT, related_name="servers", null=True, blank=True
    )
    # room held on a second host while the server moves there (a migration): counted by
    # placement on that host until the move completes or is given up
    reserved_host = models.ForeignKey(
        Host, on_delete=models.PROTECT, related_name="incoming", null=True, blank=True
    )
    # placement constraints of this server (hosting/services/placement.py)
    pinned_host = models.ForeignKey(
        Host,
        on_delete=models.SET_NULL,
        related_name="pinned_servers",
        null=True,
        blank=True,
        help_text="Only this host may run the server (placement and moves).",
    )
    required_cpu = models.CharField(
        "required CPU model",
        max_length=100,
        blank=True,
        default="",
        help_text="Only hosts whose CPU model contains this text (e.g. 'EPYC', 'Skylake').",
    )
    balance_ignore = models.BooleanField(
        "ignored by the balancer",
        default=False,
        help_text="The balancer never moves this server (maintenance still may).",
    )
    hostname = models.CharField(max_length=253, validators=[hostname_validator])
    state = models.CharField(
        max_length=16, choices=ServerState.choices, default=ServerState.PENDING, db_index=True
    )
    domain_name = models.CharField("libvirt domain name", max_length=100, unique=True)
    mac_address = models.CharField(max_length=17, unique=True)
    ssh_keys = models.ManyToManyField(SSHKey, blank=True, related_name="servers")
    state_message = models.CharField(max_length=500, blank=True, default="")
    # The provider's suspension (billing): a flag beside the power state, set and cleared
    # only by the suspend and unsuspend services; a host outage or reconciliation changes
    # the power state and never this.
    suspended = models.BooleanField(default=False, db_index=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    objects = ServerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "state"])]
        # actions that are not plain CRUD (hosting.permissions maps actions to these)
        permissions = [
            ("power_server", "Can start, stop, reboot, pause and resume servers"),
            ("suspend_server", "Can suspend and unsuspend servers"),
            ("terminate_server", "Can terminate servers"),
            ("snapshot_server", "Can take, revert and delete snapshots of servers"),
            ("backup_server", "Can back up, verify and restore servers"),
            ("migrate_server", "Can migrate servers between hosts"),
        ]

    def __str__(self) -> str:
        return self.hostname

    def save(self, *args, **kwargs) -> None:
        if not self.domain_name:
            self.domain_name = f"paddock-{self.uuid}"
        super().save(*args, **kwargs)

    @property
    def display_state(self) -> str:
        """What a badge shows: the suspension first, then the power state."""
        return (
            "suspended" if self.suspended and self.state != ServerState.TERMINATED else self.state
        )


class PlacementGroup(models.Model):
    """Servers of one customer that placement keeps together (affinity) or apart
    (anti-affinity)."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="placement_groups"
    )
    name = models.CharField(max_length=100)
    rule = models.CharField(max_length=16, choices=GroupRule.choices)
    servers = models.ManyToManyField(Server, blank=True, related_name="placement_groups")

    class Meta:
        ordering = ["customer_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="placement_group_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.rule})"
