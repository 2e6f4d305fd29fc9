"""Hypervisor backends. Only this package talks to hypervisors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, DomainSpec, HostInfo, PowerState
from .errors import BackendError, DomainNotFound, HostUnreachable, ImageNotAvailable

if TYPE_CHECKING:
    from ..models import Host

__all__ = [
    "Backend",
    "BackendError",
    "DomainNotFound",
    "DomainSpec",
    "HostInfo",
    "HostUnreachable",
    "ImageNotAvailable",
    "PowerState",
    "get_backend",
]


def get_backend(host: Host) -> Backend:
    from django.conf import settings

    from .libvirt_backend import LibvirtBackend

    if host.backend == "libvirt":
        return LibvirtBackend(
            uri=host.libvirt_uri,
            pool=host.storage_pool,
            virt_type=settings.VIRT_TYPE,
            pool_path=f"{settings.STORAGE_ROOT}/{host.storage_pool}",
        )
    raise BackendError(f"Unknown backend {host.backend!r} for host {host.name}.")
