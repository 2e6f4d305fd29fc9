"""Counters to rates: one guest's two samples (`GuestStats`) give one `Rates`.

Pure functions, no database and no hypervisor: the collector (hosting/services/collector.py)
feeds them what the backend's `stats()` read.

Counter resets: a guest that rebooted or migrated starts its counters again from zero, so
a counter smaller than before means "restarted in between": its increase is counted from
zero (the current value), never negative. A device (disk, interface) without a previous
value is new (the interfaces of a restarted guest get new names) and is counted from zero
too. A counter the backend does not report (None) adds nothing: its rate is 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..backends.stats import GuestStats

MIB = 1024 * 1024
NS = 1_000_000_000


@dataclass(frozen=True)
class Deltas:
    """What a guest did between two samples: increases of its counters over `seconds`."""

    seconds: float
    cpu_ns: int = 0
    disk_rd_bytes: int = 0
    disk_wr_bytes: int = 0
    disk_rd_reqs: int = 0
    disk_wr_reqs: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    net_rx_packets: int = 0
    net_tx_packets: int = 0
    restarted: bool = False  # some counter went backwards (reboot, migration)


@dataclass(frozen=True)
class Rates:
    """One sample of a guest, in the contract's units (see `as_sample`)."""

    cpu_pct: float
    mem_used_mib: int | None
    mem_total_mib: int
    disk_rd_bps: float
    disk_wr_bps: float
    disk_rd_iops: float
    disk_wr_iops: float
    net_rx_bps: float
    net_tx_bps: float
    net_rx_pps: float
    net_tx_pps: float

    def as_sample(self, *, server: str, t: float) -> dict:
        return {
            "server": server,
            "t": t,
            "cpu_pct": round(self.cpu_pct, 2),
            "mem_used_mib": self.mem_used_mib,
            "mem_total_mib": self.mem_total_mib,
            "disk_rd_bps": round(self.disk_rd_bps, 1),
            "disk_wr_bps": round(self.disk_wr_bps, 1),
            "disk_rd_iops": round(self.disk_rd_iops, 2),
            "disk_wr_iops": round(self.disk_wr_iops, 2),
            "net_rx_bps": round(self.net_rx_bps, 1),
            "net_tx_bps": round(self.net_tx_bps, 1),
            "net_rx_pps": round(self.net_rx_pps, 2),
            "net_tx_pps": round(self.net_tx_pps, 2),
        }


def increase(before: int | None, now: int | None) -> tuple[int, bool]:
    """The increase of one cumulative counter and whether it was reset in between.

    Unknown now: nothing. Unknown before (a new counter): counted from zero."""
    if now is None:
        return 0, False
    if before is None:
        return now, False
    if now < before:
        return now, True
    return now - before, False


def _sum_increases(pairs: Iterable[tuple[int | None, int | None]]) -> tuple[int, bool]:
    total, reset = 0, False
    for before, now in pairs:
        amount, was_reset = increase(before, now)
        total += amount
        reset = reset or was_reset
    return total, reset


def deltas(prev: GuestStats, cur: GuestStats, seconds: float) -> Deltas:
    """The increases of every counter of a guest between two samples `seconds` apart."""
    cpu, cpu_reset = (
        increase(prev.cpu_time_ns, cur.cpu_time_ns) if cur.cpu_time_ns is not None else (0, False)
    )
    old_disks = {d.name: d for d in prev.disks}
    old_nics = {n.name: n for n in prev.nics}
    resets = [cpu_reset]
    values: dict[str, int] = {}
    for field, attr in (
        ("disk_rd_bytes", "rd_bytes"),
        ("disk_wr_bytes", "wr_bytes"),
        ("disk_rd_reqs", "rd_reqs"),
        ("disk_wr_reqs", "wr_reqs"),
    ):
        pairs = [
            (getattr(old_disks[d.name], attr) if d.name in old_disks else None, getattr(d, attr))
            for d in cur.disks
        ]
        values[field], reset = _sum_increases(pairs)
        resets.append(reset)
    for field, attr in (
        ("net_rx_bytes", "rx_bytes"),
        ("net_tx_bytes", "tx_bytes"),
        ("net_rx_packets", "rx_packets"),
        ("net_tx_packets", "tx_packets"),
    ):
        pairs = [
            (getattr(old_nics[n.name], attr) if n.name in old_nics else None, getattr(n, attr))
            for n in cur.nics
        ]
        values[field], reset = _sum_increases(pairs)
        resets.append(reset)
    return Deltas(seconds=seconds, cpu_ns=cpu, restarted=any(resets), **values)


def memory_used_mib(stats: GuestStats) -> int | None:
    """Used inside the guest, from the balloon driver (available - unused); None without."""
    if stats.memory_available_bytes is None or stats.memory_unused_bytes is None:
        return None
    return max(0, stats.memory_available_bytes - stats.memory_unused_bytes) // MIB


def memory_total_mib(stats: GuestStats, *, default_mib: int) -> int:
    """What the guest has: as it sees it, else the balloon's current size, else the plan."""
    for value in (stats.memory_available_bytes, stats.memory_current_bytes):
        if value:
            return value // MIB
    return default_mib


def rates(
    d: Deltas, cur: GuestStats, *, default_vcpus: int = 1, default_memory_mib: int = 0
) -> Rates:
    """Per-second rates of `d`; CPU as a percentage of all the guest's vCPUs (0-100)."""
    seconds = d.seconds if d.seconds > 0 else 0.0
    vcpus = cur.vcpus or default_vcpus or 1

    def per_second(amount: int) -> float:
        return amount / seconds if seconds else 0.0

    cpu_pct = 100.0 * per_second(d.cpu_ns) / (NS * vcpus)
    return Rates(
        cpu_pct=min(100.0, max(0.0, cpu_pct)),
        mem_used_mib=memory_used_mib(cur),
        mem_total_mib=memory_total_mib(cur, default_mib=default_memory_mib),
        disk_rd_bps=per_second(d.disk_rd_bytes),
        disk_wr_bps=per_second(d.disk_wr_bytes),
        disk_rd_iops=per_second(d.disk_rd_reqs),
        disk_wr_iops=per_second(d.disk_wr_reqs),
        net_rx_bps=per_second(d.net_rx_bytes),
        net_tx_bps=per_second(d.net_tx_bytes),
        net_rx_pps=per_second(d.net_rx_packets),
        net_tx_pps=per_second(d.net_tx_packets),
    )
