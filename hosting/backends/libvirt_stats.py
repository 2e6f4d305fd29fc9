"""libvirt's domain states and bulk statistics records, in the backends' neutral terms."""

from __future__ import annotations

import libvirt

from .power import PowerState
from .stats import DiskStats, GuestStats, NicStats

KIB = 1024

STATE_MAP = {
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
}
STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)


def _stat(values: dict, key: str, scale: int = 1) -> int | None:
    value = values.get(key)
    return None if value is None else int(value) * scale


def guest_stats(values: dict) -> GuestStats:
    """One domain's record of getAllDomainStats, in neutral terms."""
    disks = tuple(
        DiskStats(
            name=str(values.get(f"block.{i}.name", i)),
            rd_bytes=_stat(values, f"block.{i}.rd.bytes"),
            wr_bytes=_stat(values, f"block.{i}.wr.bytes"),
            rd_reqs=_stat(values, f"block.{i}.rd.reqs"),
            wr_reqs=_stat(values, f"block.{i}.wr.reqs"),
        )
        for i in range(int(values.get("block.count", 0)))
    )
    nics = tuple(
        NicStats(
            name=str(values.get(f"net.{i}.name", i)),
            rx_bytes=_stat(values, f"net.{i}.rx.bytes"),
            tx_bytes=_stat(values, f"net.{i}.tx.bytes"),
            rx_packets=_stat(values, f"net.{i}.rx.pkts"),
            tx_packets=_stat(values, f"net.{i}.tx.pkts"),
        )
        for i in range(int(values.get("net.count", 0)))
    )
    return GuestStats(
        state=STATE_MAP.get(values.get("state.state", -1), PowerState.OTHER),
        cpu_time_ns=_stat(values, "cpu.time"),
        vcpus=_stat(values, "vcpu.current"),
        memory_current_bytes=_stat(values, "balloon.current", KIB),
        memory_available_bytes=_stat(values, "balloon.available", KIB),
        memory_unused_bytes=_stat(values, "balloon.unused", KIB),
        memory_rss_bytes=_stat(values, "balloon.rss", KIB),
        disks=disks,
        nics=nics,
    )
