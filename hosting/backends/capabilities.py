"""What a backend can do, as a set of flags that callers read without connecting.

Each backend class declares `capabilities` (a frozenset of `Capability`); a backend whose
flavour depends on the host (libvirt's test driver beside QEMU) refines it per host in
`capabilities_for(host)`. The state table, the API and the panel consult
`hosting.backends.backend_capabilities(host)` before they offer an action.

A flag says what the hypervisor kind offers; a feature still needs Paddock's own code for
it (live migration, backups and consoles come in later issues).
"""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    LIVE_MIGRATION = "live_migration"  # move a running guest to another host
    OFFLINE_MIGRATION = "offline_migration"  # move a stopped guest and its disks
    SNAPSHOTS = "snapshots"  # disk snapshots
    MEMORY_SNAPSHOTS = "memory_snapshots"  # snapshots with a running guest's memory
    BACKUP = "backup"  # a full copy of a guest's disk, read while it runs
    INCREMENTAL_BACKUP = "incremental_backup"  # changed-block tracking
    SERIAL_CONSOLE = "serial_console"  # the guest's serial output can be read
    VNC = "vnc"  # a graphical console
    STATS = "stats"  # usage counters (CPU time, memory, disk and network I/O)
    PAUSE = "pause"  # freeze a guest in memory and thaw it
    MEMORY_HARD_LIMIT = "memory_hard_limit"  # cap the guest's whole process memory

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")
