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
    libvirt_version: str = ""
    networks: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()


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
    # a read-only second disk (vdb) holding the NoCloud seed, labelled cidata
    seed_volume: str | None = None
    # the serial console is also written to this file in the disk's pool
    console_log: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """One hypervisor host. Every method is safe to call twice with the same arguments."""

    @abstractmethod
    def host_info(self) -> HostInfo: ...

    @abstractmethod
    def ensure_image(self, *, volume: str, size_bytes: int, source_path: str | None) -> None:
        """Make the image's base volume exist in the host's pool."""

    @abstractmethod
    def create_disk(
        self, *, volume: str, base_volume: str, size_gib: int, overlay: bool = True
    ) -> str:
        """Create the server's disk from the base volume, grown to size; return its path.

        `overlay` makes a qcow2 overlay backed by the base; otherwise a full copy."""

    @abstractmethod
    def put_volume(self, *, volume: str, data: bytes) -> None:
        """Write a small raw volume (a seed ISO) into the pool, replacing an old one."""

    @abstractmethod
    def console_log(self, name: str, *, max_bytes: int = 65536) -> str:
        """The tail of a domain's serial console log ("" when it has none yet)."""

    @abstractmethod
    def domain_states(self) -> dict[str, PowerState]:
        """Every domain on the host with its state, in one call."""

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
