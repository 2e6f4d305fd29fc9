from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Func, Value
from django.db.models.functions import Coalesce

from ..choices import (
    BackendKind,
    BalanceMode,
    DiskMode,
    HostState,
    PlacementPolicy,
    VirtKind,
    VirtType,
)
from ..querysets import HostQuerySet
from ..validators import host_uri_problem, validate_libvirt_uri

COUNTER_FIELDS = frozenset({"alloc_vcpus", "alloc_memory_mib", "alloc_disk_gib", "alloc_servers"})


class WholePart(Func):
    """The whole part of a non-negative number as an integer (capacity x overcommit, as
    `int()` reads it in Host.vcpu_capacity): FLOOR()::bigint on PostgreSQL (a plain cast
    rounds there), CAST AS INTEGER (which truncates) on SQLite."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        extra_context.setdefault("template", "CAST(%(expressions)s AS INTEGER)")
        return super().as_sql(compiler, connection, **extra_context)

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler, connection, template="FLOOR(%(expressions)s)::bigint", **extra_context
        )


def _room(capacity, reserve: str, alloc: str) -> models.GeneratedField:
    return models.GeneratedField(
        expression=capacity - Coalesce(F(reserve), Value(0)) - F(alloc),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )


class Host(models.Model):
    """A hypervisor host. Capacity fields are read from the hypervisor, not typed in."""

    name = models.CharField(max_length=100, unique=True)
    # (named for the first backend; an LXC host's URI is kept here too)
    libvirt_uri = models.CharField(
        "connection URI",
        max_length=300,
        unique=True,
        validators=[validate_libvirt_uri],
        help_text="libvirt: qemu+ssh://, qemu+tls:// or qemu+tcp://HOST/system, qemu:///system "
        "or test:///default; parameters that run programs or pick sockets are refused. "
        "LXC: lxc+ssh://root@HOST/var/lib/lxc, or lxc:///var/lib/lxc for this machine.",
    )
    backend = models.CharField(
        max_length=16, choices=BackendKind.choices, default=BackendKind.LIBVIRT
    )
    kind = models.CharField(max_length=16, choices=VirtKind.choices, default=VirtKind.VM)
    state = models.CharField(max_length=16, choices=HostState.choices, default=HostState.OFFLINE)
    zone = models.CharField(max_length=50, blank=True, default="")
    storage_pool = models.CharField(
        max_length=100, default="paddock", help_text="libvirt storage pool for server disks."
    )
    shared_pools = models.JSONField(
        default=list,
        blank=True,
        help_text="Storage pools this host shares with others at the same path (NFS, a "
        "cluster file system): migrations leave disks there in place. libvirt cannot tell "
        "a shared directory from a local one, so only the pools named here are trusted.",
    )
    migration_address = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Address this host receives live migrations at; empty: the address of "
        "its libvirt URI. Needed where hosts share a hostname.",
    )
    network = models.CharField(
        max_length=100, default="default", help_text="libvirt network the guests attach to."
    )
    queue = models.CharField(
        max_length=100,
        default="paddock",
        help_text="Celery queue whose workers run this host's jobs.",
    )
    cpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveBigIntegerField(default=0)
    disk_gib = models.PositiveBigIntegerField(default=0)
    disk_mode = models.CharField(
        max_length=16,
        choices=DiskMode.choices,
        default=DiskMode.OVERLAY,
        help_text="How server disks are made from the base image in this host's pool.",
    )
    virt_type = models.CharField(
        "virtualization type",
        max_length=8,
        choices=VirtType.choices,
        default=VirtType.AUTO,
        help_text="Detected: what the host offers (read at onboarding); KVM or TCG: forced.",
    )
    detected_virt_type = models.CharField(
        max_length=16,
        blank=True,
        default="",
        help_text="The best virtualization the host offered when it was last read.",
    )
    cpu_model = models.CharField(max_length=100, blank=True, default="")
    hypervisor_version = models.CharField(max_length=50, blank=True, default="")
    libvirt_version = models.CharField(max_length=50, blank=True, default="")
    networks = models.JSONField(default=list, blank=True, help_text="libvirt networks seen.")
    storage_pools = models.JSONField(default=list, blank=True, help_text="libvirt pools seen.")
    unknown_domains = models.JSONField(
        default=list,
        blank=True,
        help_text="Domains on the host that Paddock does not know (reported, never deleted).",
    )
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    cpu_overcommit = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("4.00"),
        validators=[MinValueValidator(Decimal("1"))],
    )
    ram_overcommit = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("1"))],
    )
    last_seen = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # maintenance: no new placements (hosting/services/placement.py); entered and left
    # through hosting.services.hosts.set_maintenance (audited), never by reconciliation
    maintenance = models.BooleanField(default=False, db_index=True)
    maintenance_since = models.DateTimeField(null=True, blank=True)
    maintenance_reason = models.CharField(max_length=300, blank=True, default="")
    # room kept free for the host itself; empty: the PADDOCK_PLACEMENT_RESERVE_* setting
    reserve_vcpus = models.PositiveIntegerField(
        null=True, blank=True, help_text="vCPUs kept free (empty: the setting's default)."
    )
    reserve_memory_mib = models.PositiveIntegerField(
        null=True, blank=True, help_text="MiB kept free (empty: the setting's default)."
    )
    reserve_disk_gib = models.PositiveIntegerField(
        null=True, blank=True, help_text="GiB kept free (empty: the setting's default)."
    )
    # What the host's servers hold (plans of servers not terminated, placed here or moving
    # here): changed only by hosting.services.placement in the transaction that places,
    # moves or terminates a server, under this row's lock; `recount` rebuilds them.
    alloc_vcpus = models.PositiveIntegerField(default=0, editable=False)
    alloc_memory_mib = models.PositiveBigIntegerField(default=0, editable=False)
    alloc_disk_gib = models.PositiveBigIntegerField(default=0, editable=False)
    alloc_servers = models.PositiveIntegerField(default=0, editable=False)
    # What is left: capacity x overcommit, less the host's own reserve (Host.reserve_*,
    # not the setting's default, which placement subtracts in its query) and the
    # counters; computed by the database on every write, so that placement filters and
    # orders hosts on plain integers (and an index) instead of decimal arithmetic per row.
    room_vcpus = _room(WholePart(F("cpus") * F("cpu_overcommit")), "reserve_vcpus", "alloc_vcpus")
    room_memory_mib = _room(
        WholePart(F("memory_mib") * F("ram_overcommit")), "reserve_memory_mib", "alloc_memory_mib"
    )
    room_disk_gib = _room(F("disk_gib"), "reserve_disk_gib", "alloc_disk_gib")

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        # placement's candidate query: the zone's hosts in order of free memory
        indexes = [models.Index(fields=["zone", "room_memory_mib"], name="host_zone_room_idx")]
        permissions = [
            ("refresh_host", "Can refresh hosts from their hypervisor"),
            ("maintain_host", "Can put hosts into maintenance and take them out"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # a whole-row save (the admin, a refresh) never writes the usage counters: they are
        # changed only by F() updates under the row's lock (hosting/services/placement.py)
        if (
            self.pk is not None
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
        ):
            kwargs["update_fields"] = [
                f.attname
                for f in self._meta.concrete_fields
                if not f.primary_key and not f.generated and f.attname not in COUNTER_FIELDS
            ]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.libvirt_uri and (problem := host_uri_problem(self.libvirt_uri, self.backend)):
            raise ValidationError({"libvirt_uri": problem})
        if self.backend == BackendKind.LXC and self.kind != VirtKind.CONTAINER:
            raise ValidationError({"kind": "An LXC host runs containers."})
        if self.backend == BackendKind.LIBVIRT and self.kind != VirtKind.VM:
            raise ValidationError({"kind": "A libvirt host runs virtual machines."})

    @property
    def effective_virt_type(self) -> str:
        """kvm or qemu: the host's own choice, else what it offered, else TCG (safe)."""
        if self.virt_type != VirtType.AUTO:
            return self.virt_type
        if self.detected_virt_type in (VirtType.KVM, VirtType.QEMU):
            return self.detected_virt_type
        return VirtType.QEMU

    @property
    def vcpu_capacity(self) -> int:
        return int(self.cpus * self.cpu_overcommit)

    @property
    def memory_capacity_mib(self) -> int:
        return int(self.memory_mib * self.ram_overcommit)

    @property
    def reserved(self) -> tuple[int, int, int]:
        """(vCPUs, MiB, GiB) kept free: the host's own figures, else the settings'."""
        from django.conf import settings

        return (
            settings.PLACEMENT_RESERVE_VCPUS if self.reserve_vcpus is None else self.reserve_vcpus,
            settings.PLACEMENT_RESERVE_MEMORY_MIB
            if self.reserve_memory_mib is None
            else self.reserve_memory_mib,
            settings.PLACEMENT_RESERVE_DISK_GIB
            if self.reserve_disk_gib is None
            else self.reserve_disk_gib,
        )


class Zone(models.Model):
    """A zone's placement settings; hosts name their zone (Host.zone). A zone without a
    row here places with the default policy (PADDOCK_PLACEMENT_POLICY, spread)."""

    name = models.CharField(max_length=50, unique=True)
    policy = models.CharField(
        max_length=16, choices=PlacementPolicy.choices, default=PlacementPolicy.SPREAD
    )
    description = models.CharField(max_length=200, blank=True, default="")
    # the balancer (hosting/services/balancer.py): off, advise (plans wait for approval)
    # or apply (migrations requested at once)
    balance_mode = models.CharField(
        max_length=16, choices=BalanceMode.choices, default=BalanceMode.OFF
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
