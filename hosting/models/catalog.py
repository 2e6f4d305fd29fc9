from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from ..choices import ImageFormat, OSFamily, TransferPolicy, VirtKind
from ..querysets import CatalogQuerySet
from ..validators import validate_image_source, validate_name


class Plan(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    kind = models.CharField(max_length=16, choices=VirtKind.choices, default=VirtKind.VM)
    vcpus = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    memory_mib = models.PositiveIntegerField(validators=[MinValueValidator(64)])
    disk_gib = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    transfer_gib = models.FloatField(
        "monthly transfer (GiB)",
        default=1000,
        validators=[MinValueValidator(0)],
        help_text="In + out, per server and calendar month; 0 is unmetered.",
    )
    transfer_policy = models.CharField(
        max_length=16,
        choices=TransferPolicy.choices,
        default=TransferPolicy.THROTTLE,
        help_text="What happens once a server has used its monthly transfer (in + out).",
    )
    throttle_kbps = models.PositiveIntegerField(
        "throttled rate (kbit/s)",
        default=1024,
        validators=[MinValueValidator(8)],
        help_text="Each direction of a throttled server's interfaces, until the next month.",
    )
    # containers only (a VM's swap is inside its disk, its processes its own business)
    swap_mib = models.PositiveIntegerField(
        "swap (MiB)", default=0, help_text="Containers: swap allowed beside the memory."
    )
    max_processes = models.PositiveIntegerField(
        default=1024,
        validators=[MinValueValidator(16)],
        help_text="Containers: the most processes (and threads) at once.",
    )
    snapshot_slots = models.PositiveSmallIntegerField(default=1)
    backup_slots = models.PositiveSmallIntegerField(default=1)
    monthly_price = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    is_active = models.BooleanField(default=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["monthly_price", "name"]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    os_family = models.CharField(max_length=16, choices=OSFamily.choices, default=OSFamily.LINUX)
    os_version = models.CharField(max_length=50, blank=True, default="")
    kind = models.CharField(max_length=16, choices=VirtKind.choices, default=VirtKind.VM)
    format = models.CharField(max_length=8, choices=ImageFormat.choices, default=ImageFormat.QCOW2)
    source = models.CharField(
        max_length=500,
        help_text="Path of the image file in the image store (relative to IMAGE_STORE), "
        "or empty for an image that exists only as a volume on the hosts.",
        blank=True,
        default="",
        validators=[validate_image_source],
    )
    volume_name = models.CharField(
        max_length=200, unique=True, help_text="Name of the base volume in each host's pool."
    )
    min_disk_gib = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    cloud_init = models.BooleanField("cloud-init capable", default=True)
    is_active = models.BooleanField(default=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
