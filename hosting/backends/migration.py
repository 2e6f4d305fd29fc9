"""Migration in the backends' neutral terms: how a move is tuned and what it produced.

The job runner builds a `MigrationTuning` from the settings and the job's params; a
backend's `migrate()` returns a `MigrationResult`, which the job stores as its result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MigrationTuning:
    """How a live migration is run, and how it is pushed when it does not converge."""

    # the migration stream's cap; QEMU's own default (128 MiB/s) starves a busy guest
    bandwidth_mib_s: int = 1024
    # the longest pause of the guest at the switch-over the migration aims for
    downtime_ms: int = 50
    # escalation when it does not converge: after `escalate_after_s`, and then every
    # `escalate_every_s`, the downtime target doubles up to `max_downtime_ms`; then
    # post-copy (when `postcopy` allows it and no disk is copied)
    escalate_after_s: float = 8.0
    escalate_every_s: float = 4.0
    max_downtime_ms: int = 500
    # QEMU slows the guest's vCPUs once it sees the migration not converging (its own
    # trigger: dirtying outpaces the transfer in consecutive passes); a capability that
    # must be set when the migration starts
    auto_converge: bool = True
    postcopy: bool = True
    # the whole move gives up (and the guest stays on the source) after this long
    timeout_s: float = 600.0


# should_cancel(): True once the job was asked to stop (the backend aborts the migration)
CancelCheck = Callable[[], bool]


def never_cancelled() -> bool:
    return False


@dataclass
class MigrationResult:
    """What a finished migration reports (stored as the job's `result`)."""

    live: bool
    total_seconds: float = 0.0  # the whole move: checks made, volumes prepared, cleaned up
    migration_seconds: float = 0.0  # libvirt's migration job alone (its time_elapsed)
    downtime_ms: int | None = None  # the guest's pause at the switch-over (live only)
    bytes_sent: int = 0  # memory and disks over the wire
    memory_bytes: int = 0
    disk_bytes: int = 0
    iterations: int = 0  # pre-copy passes over memory
    storage: str = "shared"  # "shared": disks stayed put; "copied": copied to the target
    postcopy: bool = False
    escalations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
