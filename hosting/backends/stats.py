"""Neutral usage counters of every guest on a host, read in one call (`Backend.stats()`).

Counters are cumulative since the guest started (a rate is the difference of two samples
divided by the difference of their timestamps). A counter a backend or hypervisor does
not report is None, never 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .power import PowerState


@dataclass(frozen=True)
class DiskStats:
    name: str  # the guest's device name (vda, vdb, ...)
    rd_bytes: int | None = None
    wr_bytes: int | None = None
    rd_reqs: int | None = None
    wr_reqs: int | None = None


@dataclass(frozen=True)
class NicStats:
    name: str  # the host side of the interface (vnet0, ...)
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None


@dataclass(frozen=True)
class GuestStats:
    state: PowerState
    cpu_time_ns: int | None = None
    vcpus: int | None = None
    memory_current_bytes: int | None = None  # what the guest has now (balloon)
    memory_available_bytes: int | None = None  # as the guest sees it
    memory_unused_bytes: int | None = None  # free inside the guest
    memory_rss_bytes: int | None = None  # resident on the host
    disks: tuple[DiskStats, ...] = ()
    nics: tuple[NicStats, ...] = ()


@dataclass(frozen=True)
class HostStats:
    timestamp: float  # seconds since the epoch when the sample was read
    guests: dict[str, GuestStats] = field(default_factory=dict)  # by guest name

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
