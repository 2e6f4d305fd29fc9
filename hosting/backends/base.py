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
from .spec import ByteSink, GuestSpec, Progress
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


@dataclass(frozen=True)
class DiskBackup:
    """What `Backend.backup_disk` wrote: one disk's image in the sink."""

    disk: str  # the guest's device name ("vda")
    format: str  # the image format of what was streamed ("qcow2")
    virtual_bytes: int  # the disk's size as the guest sees it
    streamed_bytes: int  # bytes written to the sink
    consistency: str  # "frozen" (guest agent) or "crash-consistent"
    checkpoint: str
    since: str | None = None


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

    # --- snapshots ---------------------------------------------------------------------
    # A snapshot is named on the host by `key` (short, unique per guest); the database
    # keeps its name, description and order. Reverting to a snapshot removes the ones
    # taken after it (their states branch off a past that no longer exists).
    def create_snapshot(
        self, name: str, key: str, *, description: str = "", with_memory: bool = False
    ) -> None:
        """Take snapshot `key` of guest `name`: its disk, and its memory too when asked
        and the guest runs. Taking one that exists already is a no-op."""
        raise NotSupported("This host's backend cannot take snapshots.")

    def revert_snapshot(self, name: str, key: str, *, with_memory: bool = False) -> None:
        """Put the guest's disk back to snapshot `key` (the guest is forced off first); with
        `with_memory` the guest runs on from the snapshot's memory, otherwise it stays
        off. Snapshots taken after `key` are removed."""
        raise NotSupported("This host's backend cannot revert snapshots.")

    def delete_snapshot(self, name: str, key: str) -> None:
        """Remove snapshot `key`, keeping the guest's current disk as it is (the
        snapshot's data is merged into what depends on it). Gone already is fine."""
        raise NotSupported("This host's backend cannot delete snapshots.")

    def snapshot_keys(self, name: str) -> list[str]:
        """The keys of the guest's snapshots on the host, oldest first."""
        raise NotSupported("This host's backend cannot list snapshots.")

    # --- backups ----------------------------------------------------------------------
    def backup_disk(
        self,
        name: str,
        *,
        checkpoint: str,
        since: str | None,
        sink: ByteSink,
        progress: Progress | None = None,
    ) -> DiskBackup:
        """Copy guest `name`'s disk as it is now into `sink` (a qcow2 image, streamed), and
        leave checkpoint `checkpoint` for the next incremental. With `since` (an earlier
        checkpoint) only the blocks written after it are in the image (an incremental);
        a checkpoint the host no longer has raises `CheckpointMissing`. Works on a
        running guest (crash-consistent, or frozen when the guest agent answers) and on a
        stopped one."""
        raise NotSupported("This host's backend cannot back up disks.")

    def forget_checkpoints(self, name: str) -> None:
        """Drop every checkpoint of the guest: the next backup must be a full one."""
        return None

    def replace_disk(self, name: str, *, source_path: str) -> None:
        """Make the file at `source_path` (a qcow2 image on this machine) guest `name`'s
        disk: uploaded to the host in place of its disk and snapshots, checkpoints
        dropped. The guest must be off or not defined yet (a restore into a new server
        uploads the disk before provisioning, which then keeps it)."""
        raise NotSupported("This host's backend cannot restore disks.")

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
