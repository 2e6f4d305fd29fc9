"""The interface every hypervisor backend implements (libvirt today, LXC next).

A backend is one host, seen through one hypervisor kind. Every method is safe to call
twice with the same arguments (a retried job repeats its steps), and raises only the
exceptions of `hosting.backends.errors`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .capabilities import Capability
from .errors import NotSupported
from .migration import CancelCheck, MigrationResult, MigrationTuning, never_cancelled
from .power import PowerState
from .spec import GuestSpec, Progress
from .stats import HostStats

if TYPE_CHECKING:
    from ..models import Host


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
    # the best virtualization the host offers: "kvm" (hardware), "qemu" (TCG, software
    # emulation), or the backend's own word ("test" for libvirt's test driver)
    virt_type: str = ""


class Backend(ABC):
    """One hypervisor host.

    Class attributes, readable without connecting (see `hosting.backends.registry`):
    `kind` (a `BackendKind` value) and `capabilities`. `capabilities_for(host)` refines
    them for one host where the flavour depends on it.
    """

    kind: ClassVar[str] = ""
    capabilities: frozenset[Capability] = frozenset()

    @classmethod
    @abstractmethod
    def for_host(cls, host: Host) -> Backend:
        """The backend of a Host record (its URI, pool, virtualization type, ...)."""

    @classmethod
    def capabilities_for(cls, host: Host) -> frozenset[Capability]:
        return cls.capabilities

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    # --- the host -------------------------------------------------------------------
    @abstractmethod
    def host_info(self) -> HostInfo:
        """Capacity, versions, networks, pools and virtualization type of the host."""

    @abstractmethod
    def stats(self) -> HostStats:
        """Usage counters of every guest on the host, read in one call."""

    @abstractmethod
    def domain_states(self) -> dict[str, PowerState]:
        """Every guest on the host with its state, in one call."""

    # --- a guest's life -------------------------------------------------------------
    @abstractmethod
    def provision(self, spec: GuestSpec, *, progress: Progress | None = None) -> None:
        """Create the guest and start it: image on the host, disk, seed, definition,
        start. Returns once the guest was started (not once it has booted). Each step
        skips what exists, so a repeated call finishes what a failed one began."""

    @abstractmethod
    def deprovision(self, name: str) -> None:
        """Stop the guest hard and remove it with everything provision made for it (disk,
        seed, console log). What is already gone is fine."""

    @abstractmethod
    def state(self, name: str) -> PowerState: ...

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
    def pause(self, name: str) -> None:
        """Freeze the guest in memory (its CPUs stop). Not the provider's suspension of a
        customer (JobKind.SUSPEND), which shuts the guest down."""

    @abstractmethod
    def resume(self, name: str) -> None:
        """Thaw a paused guest."""

    @abstractmethod
    def console_log(self, name: str, *, max_bytes: int = 65536) -> str:
        """The tail of the guest's serial console log ("" when it has none yet)."""

    def set_bandwidth(self, name: str, kbps: int | None) -> None:
        """Limit each direction of every network interface of the guest to `kbps`
        kilobits per second (None: no limit), now and across restarts."""
        raise NotSupported("This host's backend cannot limit bandwidth.")

    # --- migration -----------------------------------------------------------------
    def check_migration(self, name: str, target: Backend, *, live: bool = True) -> list[str]:
        """Problems that would stop guest `name` moving from this host to `target`, for an
        admin to read; [] when none was found. Never raises for a problem it can name.

        The base checks what every backend shares (capabilities on both ends, the same
        backend kind, two different hosts); a backend adds its own (the guest exists, the
        target has its network and storage, compatible CPU)."""
        needed = Capability.LIVE_MIGRATION if live else Capability.OFFLINE_MIGRATION
        problems = []
        if not self.supports(needed):
            problems.append(f"The source host's backend cannot do {needed.label}.")
        if not target.supports(needed):
            problems.append(f"The target host's backend cannot do {needed.label}.")
        if target.kind != self.kind:
            problems.append(f"The target is a {target.kind} host, the source a {self.kind} one.")
        return problems

    def migrate(
        self,
        name: str,
        target: Backend,
        *,
        live: bool = True,
        tuning: MigrationTuning | None = None,
        progress: Progress | None = None,
        should_cancel: CancelCheck = never_cancelled,
    ) -> MigrationResult:
        """Move guest `name` to `target`: running (`live`, tuned by `tuning`: bandwidth,
        downtime target, escalation, time limit) or stopped, with disks that are not on
        storage both hosts share copied. Reports progress and polls `should_cancel`; on
        return the guest runs on the target (when it ran before) and is gone from this
        host. On failure (`Cancelled` when asked to stop) the guest is still here, as it
        was, and nothing is left of it on the target."""
        needed = Capability.LIVE_MIGRATION if live else Capability.OFFLINE_MIGRATION
        raise NotSupported(f"This host's backend cannot do {needed.label}.")
