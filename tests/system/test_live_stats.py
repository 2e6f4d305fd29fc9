"""A real guest's counters, end to end: the collector (a real worker on the host's stats
queue) reads them, the customer's socket streams them, the rollups count them into the
month's usage, and a tiny transfer allowance throttles the guest's interface on its host."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.urls import reverse

from hosting.choices import TransferPolicy
from hosting.models import AuditEvent, Plan, Server, ServerStatsHour
from hosting.services.quotas import check_transfer
from testbed.layout import TestbedHost
from workers.tasks import collect_stats

from ..sockets import socket
from .guests import create, virsh, wait_console, wait_job

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

MIB = 1024**2
GIB = 1024**3
ALLOWANCE_GIB = 0.002  # about 2 MiB a month
SENT_BYTES = 4 * MIB  # sent to the guest, past the allowance
THROTTLE_KBPS = 800  # libvirt's QoS average: 100 KB/s
LIMIT_BPS = THROTTLE_KBPS * 1000 // 8


def udp_flood(netns: str, address: str, total: int) -> list[str]:
    """From the guest's host: `total` bytes of UDP datagrams to the guest, paced so that a
    TCG guest takes them in (its interface counts them whether a port listens or not)."""
    code = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for i in range({total // 1024}):\n"
        f"    s.sendto(b'x' * 1024, ({address!r}, 9))\n"
        "    if i % 16 == 0: time.sleep(0.01)\n"
    )
    return ["ip", "netns", "exec", netns, "python3", "-c", code]


def month_usage(client, server: Server) -> dict:
    resp = client.get(f"/api/v1/servers/{server.uuid}/usage/")
    assert resp.status_code == 200, resp.content
    return resp.json()


async def stream_during_flood(communicator, flood: list[str], done, timeout: float = 180) -> list:
    """Play beat (a collector pass per host every STATS_INTERVAL, run by the worker) while
    `flood` sends traffic to the guest, and collect the samples the owner's socket gets,
    until `done(samples, flood_over)`."""
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    samples: list[dict] = []
    sender = await asyncio.create_subprocess_exec(*flood)
    deadline = time.monotonic() + timeout
    try:
        while True:
            await sync_to_async(collect_stats)()
            await asyncio.sleep(settings.STATS_INTERVAL)
            while not await communicator.receive_nothing(timeout=0.05):
                message = await communicator.receive_json_from()
                if message.get("type") == "stats.sample":
                    samples.append(message["sample"])
            if await sync_to_async(done)(samples, sender.returncode is not None):
                return samples
            assert time.monotonic() < deadline, samples[-3:]
    finally:
        if sender.returncode is None:
            sender.kill()
        await sender.wait()
        await communicator.disconnect()


def tap_of(server: Server) -> str:
    listing = virsh(server.host, "domiflist", server.domain_name)
    rows = [line.split() for line in listing.splitlines()]
    return next(row[0] for row in rows if row and row[-1] == server.mac_address)


def test_real_guest_counters_reach_the_stream_the_usage_and_the_quota(
    testbed, celery_worker, billing_client, owner_client, client, customer, owner, tiny_image
):
    # given a running guest on a plan with a tiny transfer allowance that throttles
    plan = Plan.objects.create(
        name="Metered",
        vcpus=1,
        memory_mib=192,
        disk_gib=2,
        transfer_gib=ALLOWANCE_GIB,
        transfer_policy=TransferPolicy.THROTTLE,
        throttle_kbps=THROTTLE_KBPS,
    )
    uuid, _ = create(billing_client, customer, plan, tiny_image, "gamma")
    server = Server.objects.select_related("host").get(uuid=uuid)
    address = server.addresses.get().address
    ready = rf"paddock-guest hostname=gamma ip={re.escape(address)} ready"
    wait_console(billing_client, uuid, ready)
    netns = TestbedHost(int(server.host.name.removeprefix("tb-hv"))).netns

    # when the guest receives 4 MiB while the collector runs and the owner watches, until
    # the finished minutes' rollups hold the traffic
    def counted(samples, flood_over) -> bool:
        usage = month_usage(owner_client, server)
        return flood_over and usage["transfer_in_gib"] * GIB >= 0.9 * SENT_BYTES

    flood = udp_flood(netns, address, SENT_BYTES)
    samples = async_to_sync(stream_during_flood)(socket(server, owner), flood, counted)

    # then the owner's socket carried the guest's own CPU and network rates
    assert samples and {s["server"] for s in samples} == {uuid}
    assert max(s["cpu_pct"] for s in samples) > 0, samples
    assert max(s["net_rx_bps"] for s in samples) > 2 * LIMIT_BPS, samples
    assert max(s["net_rx_pps"] for s in samples) > 10, samples
    assert all(s["mem_total_mib"] == 192 for s in samples), samples

    # and the month's usage (from the hour rollups) counts the traffic and the CPU time
    usage = month_usage(owner_client, server)
    assert usage["transfer_in_gib"] * GIB >= 0.9 * SENT_BYTES, usage
    assert usage["transfer_in_gib"] * GIB < 2 * SENT_BYTES, usage  # counted once
    hours = ServerStatsHour.objects.filter(server=server)
    cpu_seconds = sum(h.cpu_seconds for h in hours)
    assert cpu_seconds > 0, list(hours.values())
    assert usage["cpu_hours"] == round(cpu_seconds / 3600, 3), (usage, cpu_seconds)
    assert sum(h.seconds for h in hours) > 0

    # when the quota check runs: the allowance is spent and the policy applies
    report = check_transfer()
    assert report.exceeded == [server.pk], report
    event = AuditEvent.objects.get(action="server.transfer_exceeded", target_id=str(server.pk))
    assert event.details["policy"] == TransferPolicy.THROTTLE

    # then the guest's interface is limited on its host: libvirt's QoS and the tc classes
    def limited() -> bool:
        tune = virsh(server.host, "domiftune", server.domain_name, server.mac_address)
        return re.search(r"inbound\.average\s*:\s*100\b", tune) is not None

    deadline = time.monotonic() + 60
    while not limited():
        assert time.monotonic() < deadline, "the interface was not throttled"
        time.sleep(0.5)
    tc = subprocess.run(
        ["ip", "netns", "exec", netns, "tc", "class", "show", "dev", tap_of(server)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rate 800Kbit" in tc, tc

    # and it holds: a flood as fast as the first reaches the guest at about the limit
    def watched_a_while(samples, flood_over) -> bool:
        return flood_over and len(samples) >= 4

    flood = udp_flood(netns, address, MIB)
    limited_samples = async_to_sync(stream_during_flood)(
        socket(server, owner), flood, watched_a_while, timeout=60
    )
    rates = [s["net_rx_bps"] for s in limited_samples]
    assert max(rates) > 0.5 * LIMIT_BPS, rates
    assert max(rates) < 1.5 * LIMIT_BPS, rates

    # and the customer sees the notice on the server's page
    client.force_login(owner)
    page = client.get(reverse("dashboard:server-detail", kwargs={"uuid": uuid})).content.decode()
    assert 'data-transfer-notice="100"' in page
    assert f"limited to {THROTTLE_KBPS} kbit/s" in page

    resp = billing_client.delete(f"/api/v1/servers/{uuid}/")
    assert wait_job(billing_client, resp.json()["id"])["status"] == "succeeded"
