"""Counters to rates (hosting/services/stats_rates.py): pure functions, libvirt's own
record format parsed by the backend's parser (hosting/backends/libvirt_stats.py)."""

from __future__ import annotations

import pytest

from hosting.backends.libvirt_stats import guest_stats
from hosting.services.stats_rates import deltas, increase, memory_used_mib, rates

GIB = 1024**3


def record(
    *,
    cpu_ns: int | None = 0,
    vcpus: int | None = 2,
    rx: int = 0,
    tx: int = 0,
    rx_pkts: int = 0,
    tx_pkts: int = 0,
    rd: int = 0,
    wr: int = 0,
    rd_reqs: int = 0,
    wr_reqs: int = 0,
    nic: str = "vnet0",
    balloon: bool = True,
) -> dict:
    """One domain's getAllDomainStats record, as libvirt returns it."""
    values: dict = {
        "state.state": 1,
        "net.count": 1,
        "net.0.name": nic,
        "net.0.rx.bytes": rx,
        "net.0.tx.bytes": tx,
        "net.0.rx.pkts": rx_pkts,
        "net.0.tx.pkts": tx_pkts,
        "block.count": 1,
        "block.0.name": "vda",
        "block.0.rd.bytes": rd,
        "block.0.wr.bytes": wr,
        "block.0.rd.reqs": rd_reqs,
        "block.0.wr.reqs": wr_reqs,
    }
    if cpu_ns is not None:
        values["cpu.time"] = cpu_ns
    if vcpus is not None:
        values["vcpu.current"] = vcpus
    if balloon:
        values |= {
            "balloon.current": 1024 * 1024,  # KiB: 1 GiB
            "balloon.available": 1000 * 1024,
            "balloon.unused": 600 * 1024,
        }
    return values


def test_rates_are_increases_over_the_seconds_between_samples():
    # given two samples 2 s apart
    before = guest_stats(record(cpu_ns=10**9, rx=1000, tx=500, rx_pkts=10, rd=4096, rd_reqs=1))
    after = guest_stats(
        record(cpu_ns=3 * 10**9, rx=5000, tx=2500, rx_pkts=30, rd=12288, wr=8192, rd_reqs=3)
    )

    # when
    r = rates(deltas(before, after, 2.0), after)

    # then: 2 s of CPU over 2 s on 2 vCPUs is 50 %, bytes and packets per second
    assert r.cpu_pct == pytest.approx(50.0)
    assert (r.net_rx_bps, r.net_tx_bps, r.net_rx_pps) == (2000.0, 1000.0, 10.0)
    assert (r.disk_rd_bps, r.disk_wr_bps, r.disk_rd_iops) == (4096.0, 4096.0, 1.0)
    # memory from the balloon: available - unused, as the guest sees it
    assert (r.mem_used_mib, r.mem_total_mib) == (400, 1000)


def test_a_reset_counter_counts_from_zero_and_is_never_negative():
    # given a guest that rebooted between two samples: every counter restarted
    before = guest_stats(record(cpu_ns=50 * 10**9, rx=10**9, tx=10**9, rd=10**9, rx_pkts=10**6))
    after = guest_stats(record(cpu_ns=10**9, rx=3000, tx=1000, rd=0, rx_pkts=3))

    # when
    d = deltas(before, after, 1.0)
    r = rates(d, after)

    # then: what it did since the restart, nothing negative
    assert d.restarted
    assert (d.cpu_ns, d.net_rx_bytes, d.net_tx_bytes, d.disk_rd_bytes) == (10**9, 3000, 1000, 0)
    assert r.cpu_pct == pytest.approx(50.0)
    assert all(
        value >= 0 for value in (r.net_rx_bps, r.net_tx_bps, r.disk_rd_bps, r.net_rx_pps, r.cpu_pct)
    )


def test_a_new_interface_after_a_restart_counts_from_zero():
    # given the guest's interface came back as vnet7 (a migration or a restart)
    before = guest_stats(record(rx=10**9, nic="vnet0"))
    after = guest_stats(record(rx=2048, nic="vnet7"))

    # when / then
    assert deltas(before, after, 1.0).net_rx_bytes == 2048


def test_missing_counters_give_zero_rates_and_no_memory_figure():
    # given a guest whose hypervisor reports no CPU time, vCPUs nor balloon
    before = guest_stats(record(cpu_ns=None, vcpus=None, balloon=False))
    after = guest_stats(record(cpu_ns=None, vcpus=None, balloon=False))

    # when
    r = rates(deltas(before, after, 2.0), after, default_vcpus=1, default_memory_mib=512)

    # then
    assert r.cpu_pct == 0.0
    assert r.mem_used_mib is None
    assert r.mem_total_mib == 512  # the plan's
    assert memory_used_mib(after) is None


def test_cpu_percentage_is_capped_and_zero_seconds_give_zero():
    # given an increase larger than the wall time allows (clock skew between reads)
    before = guest_stats(record(cpu_ns=0, vcpus=1))
    after = guest_stats(record(cpu_ns=5 * 10**9, vcpus=1))

    # then
    assert rates(deltas(before, after, 1.0), after).cpu_pct == 100.0
    assert rates(deltas(before, after, 0.0), after).net_rx_bps == 0.0


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [(None, None, (0, False)), (5, None, (0, False)), (None, 7, (7, False)), (5, 3, (3, True))],
)
def test_increase_of_one_counter(before, now, expected):
    assert increase(before, now) == expected


def test_sample_has_the_contract_keys():
    after = guest_stats(record(cpu_ns=10**9))
    sample = rates(deltas(after, after, 2.0), after).as_sample(server="u-1", t=12.5)
    assert set(sample) == {
        "server",
        "t",
        "cpu_pct",
        "mem_used_mib",
        "mem_total_mib",
        "disk_rd_bps",
        "disk_wr_bps",
        "disk_rd_iops",
        "disk_wr_iops",
        "net_rx_bps",
        "net_tx_bps",
        "net_rx_pps",
        "net_tx_pps",
    }
    assert sample["server"] == "u-1" and sample["t"] == 12.5
