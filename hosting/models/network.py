from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError
from django.db import models

from ..choices import IPFamily
from ..querysets import AddressQuerySet
from .servers import Server


class IPPool(models.Model):
    """A subnet that servers take addresses from, IPv4 or IPv6."""

    name = models.CharField(max_length=100, unique=True)
    network = models.CharField(max_length=64, help_text="CIDR, e.g. 192.0.2.0/24")
    family = models.PositiveSmallIntegerField(choices=IPFamily.choices, editable=False)
    gateway = models.GenericIPAddressField(null=True, blank=True)
    range_start = models.GenericIPAddressField(null=True, blank=True)
    range_end = models.GenericIPAddressField(null=True, blank=True)
    dns_servers = models.CharField(max_length=200, blank=True, default="")
    zone = models.CharField(max_length=50, blank=True, default="")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["family", "name"]
        verbose_name = "IP pool"

    def __str__(self) -> str:
        return f"{self.name} ({self.network})"

    def save(self, *args, **kwargs) -> None:
        self.family = ipaddress.ip_network(self.network, strict=False).version
        super().save(*args, **kwargs)

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.network, strict=True)

    def clean(self) -> None:
        try:
            net = ipaddress.ip_network(self.network, strict=True)
        except ValueError as exc:
            raise ValidationError({"network": str(exc)}) from exc
        self.network = str(net)
        self.family = net.version
        for field in ("gateway", "range_start", "range_end"):
            value = getattr(self, field)
            if value and ipaddress.ip_address(value) not in net:
                raise ValidationError({field: f"{value} is not inside {net}."})
        start = ipaddress.ip_address(self.range_start) if self.range_start else None
        end = ipaddress.ip_address(self.range_end) if self.range_end else None
        if start is not None and end is not None and int(start) > int(end):
            raise ValidationError({"range_end": "The range ends before it starts."})


class IPAddress(models.Model):
    """An address handed out from a pool. The row exists only while it is assigned.

    The unique constraint on `address` is what guarantees that an address is never
    handed out twice, whatever the timing of concurrent requests.
    """

    pool = models.ForeignKey(IPPool, on_delete=models.PROTECT, related_name="addresses")
    address = models.GenericIPAddressField()
    server = models.ForeignKey(
        Server, on_delete=models.CASCADE, related_name="addresses", null=True, blank=True
    )
    assigned_at = models.DateTimeField(auto_now_add=True)

    objects = AddressQuerySet.as_manager()

    class Meta:
        ordering = ["pool", "address"]
        verbose_name = "IP address"
        constraints = [models.UniqueConstraint(fields=["address"], name="ip_address_unique")]

    def __str__(self) -> str:
        return self.address
