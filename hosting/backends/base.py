"""The interface every hypervisor backend implements (libvirt today, LXC later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"
    MISSING = "missing"
    OTHER = "other"


@dataclass(frozen=True)
class HostInfo:
    cpus: int
    memory_mib: int
    disk_gib: int
    cpu_model: str
    hypervisor_version: str


@dataclass(frozen=True)
class DomainSpec:
    """Everything needed to define a guest, built from the server and its plan."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    disk_volume: str
    mac_address: str
    network: str
    virt_type: str = "qemu"
    memory_hard_limit: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """One hypervisor host. Every method is safe to call twice with the same arguments."""

    @abstractmethod
    def host_info(self) -> HostInfo: ...

    @abstractmethod
    def ensure_image(self, *, volume: str, size_bytes: int, source_path: str | None) -> None:
        """Make the image's base volume exist in the host's pool."""

    @abstractmethod
    def create_disk(self, *, volume: str, base_volume: str, size_gib: int) -> str:
        """Create the server's disk from the base volume, grown to size; return its path."""

    @abstractmethod
    def define(self, spec: DomainSpec) -> None: ...

    @abstractmethod
    def start(self, name: str) -> None: ...

    @abstractmethod
    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI); returns at once."""

    @abstractmethod
    def force_off(self, name: str) -> None: ...

    @abstractmethod
    def reboot(self, name: str) -> None: ...

    @abstractmethod
    def suspend(self, name: str) -> None: ...

    @abstractmethod
    def resume(self, name: str) -> None: ...

    @abstractmethod
    def undefine(self, name: str, *, volumes: list[str]) -> None:
        """Force off, remove the domain and delete its disks; absent parts are fine."""

    @abstractmethod
    def state(self, name: str) -> PowerState: ...

    @abstractmethod
    def domain_names(self) -> list[str]: ...
