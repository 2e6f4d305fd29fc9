"""Snapshots of a server's disk (on its host) and backups of it (in the backup store)."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ..choices import BackupFrequency, BackupKind, BackupStatus, Consistency, SnapshotStatus
from ..querysets import RestrictedQuerySet
from .catalog import Plan
from .customers import Customer
from .servers import Server


class SnapshotQuerySet(RestrictedQuerySet):
    customer_path = "server__customer_id"

    def counted(self) -> SnapshotQuerySet:
        """The snapshots that take one of the plan's slots (all but failed ones)."""
        return self.exclude(status=SnapshotStatus.ERROR)


class Snapshot(models.Model):
    """A point-in-time state of a server's disk (and its memory, when taken running).

    Where it lives is the backend's business (`key` names it there): on QEMU hosts an
    external qcow2 overlay, on libvirt's test driver the driver's own snapshot."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=500, blank=True, default="")
    with_memory = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=SnapshotStatus.choices, default=SnapshotStatus.CREATING
    )
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="snapshot_name_per_server")
        ]

    def __str__(self) -> str:
        return f"{self.server} @ {self.name}"

    @property
    def key(self) -> str:
        """The snapshot's name on the host: short, unique, never shown to customers."""
        return self.uuid.hex[:12]


class BackupQuerySet(RestrictedQuerySet):
    def complete(self) -> BackupQuerySet:
        return self.filter(status=BackupStatus.COMPLETE)

    def counted(self) -> BackupQuerySet:
        """The backups that take one of the plan's slots: on-demand ones that did not
        fail (scheduled ones are bounded by their policy's retention instead)."""
        return self.exclude(status=BackupStatus.FAILED).filter(scheduled=False)


class Backup(models.Model):
    """One backup of a server's disk in the backup store: full, or incremental on top of
    its `parent` (the previous backup of the chain).

    It outlives its server: the server row stays (terminated) and the backup is kept
    until `expires_at` (set at termination: BACKUP_GRACE_DAYS later)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.ForeignKey(Server, on_delete=models.PROTECT, related_name="backups")
    # the owner, kept beside the server so that usage and scoping need no join
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(max_length=16, choices=BackupKind.choices, default=BackupKind.FULL)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="children", null=True, blank=True
    )
    status = models.CharField(
        max_length=16, choices=BackupStatus.choices, default=BackupStatus.PENDING, db_index=True
    )
    note = models.CharField(max_length=200, blank=True, default="")
    # made by a policy (hosting/services/backup_policies.py), not asked for
    scheduled = models.BooleanField(default=False)
    consistency = models.CharField(max_length=20, choices=Consistency.choices, blank=True)
    # the libvirt checkpoint (QEMU dirty bitmap) the next incremental starts from
    checkpoint = models.CharField(max_length=100, blank=True, default="")
    # disks, sizes, chain, checksums, plan, image, addresses (see hosting.backups.manifest)
    manifest = models.JSONField(default=dict, blank=True)
    # bytes in the store (compressed) and the disk's virtual size
    stored_bytes = models.BigIntegerField(default=0)
    disk_bytes = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_ok = models.BooleanField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = BackupQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} backup of {self.server} ({self.created_at:%Y-%m-%d %H:%M})"
        )

    def chain(self) -> list[Backup]:
        """This backup's chain, the full one first and this one last."""
        links: list[Backup] = [self]
        while links[0].parent_id is not None:
            parent = links[0].parent
            assert parent is not None
            links.insert(0, parent)
        return links


class BackupPolicy(models.Model):
    """When a server is backed up by itself and how many of those backups are kept: for
    every server of a plan, or for one server (which then ignores its plan's)."""

    plan = models.OneToOneField(
        Plan, on_delete=models.CASCADE, related_name="backup_policy", null=True, blank=True
    )
    server = models.OneToOneField(
        Server, on_delete=models.CASCADE, related_name="backup_policy", null=True, blank=True
    )
    enabled = models.BooleanField(default=True)
    frequency = models.CharField(
        max_length=8, choices=BackupFrequency.choices, default=BackupFrequency.DAILY
    )
    weekday = models.PositiveSmallIntegerField(
        default=6, validators=[MaxValueValidator(6)], help_text="Weekly: 0 Monday ... 6 Sunday."
    )
    window_start_hour = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(23)], help_text="UTC hour the window opens."
    )
    window_hours = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(23)],
        help_text="Each server starts at its own moment inside the window (jitter), so a "
        "host's servers do not all start at once.",
    )
    keep_daily = models.PositiveSmallIntegerField(default=7)
    keep_weekly = models.PositiveSmallIntegerField(default=4)

    class Meta:
        verbose_name_plural = "backup policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(plan__isnull=True) ^ models.Q(server__isnull=True),
                name="backup_policy_for_a_plan_or_a_server",
                violation_error_message="A policy is for a plan or for a server, not both.",
            )
        ]

    def __str__(self) -> str:
        what = f"plan {self.plan}" if self.plan_id else f"server {self.server}"
        return f"{self.get_frequency_display()} backups of {what}"
