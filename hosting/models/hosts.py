from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from ..choices import BackendKind, DiskMode, HostState, VirtKind, VirtType
from ..querysets import HostQuerySet
from ..validators import validate_libvirt_uri


class Host(models.Model):
    """A hypervisor host. Capacity fields are read from the hypervisor, not typed in."""

    name = models.CharField(max_length=100, unique=True)
    libvirt_uri = models.CharField(
        "libvirt URI",
        max_length=300,
        unique=True,
        validators=[validate_libvirt_uri],
        help_text="qemu+ssh://, qemu+tls:// or qemu+tcp://HOST/system, qemu:///system or "
        "test:///default; parameters that run programs or pick sockets are refused.",
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

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("refresh_host", "Can refresh hosts from their hypervisor")]

    def __str__(self) -> str:
        return self.name

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
