"""Real guests on a two-host testbed, driven through the REST API and a real worker."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
from django.core.management import call_command

from hosting.backends import PowerState, get_backend
from hosting.choices import HostState, ServerState, VirtType
from hosting.models import Host, IPAddress, Server
from hosting.services.reconcile import reconcile_host
from testbed.layout import TestbedHost

from ..factories import TEST_QUEUE, SSHKeyFactory
from .guests import act, console, create, heartbeats_after_last_ready, virsh, wait_console, wait_job

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def test_guests_on_two_hosts(
    testbed, celery_worker, billing_client, customer, tiny_plan, tiny_image
):
    # given two testbed hosts; when a server is created through the API for each
    servers = {}
    keys = [SSHKeyFactory(customer=customer), SSHKeyFactory(customer=customer)]
    for name in ("alpha", "beta"):
        uuid, _ = create(
            billing_client, customer, tiny_plan, tiny_image, name, keys if name == "alpha" else ()
        )
        servers[name] = Server.objects.select_related("host").get(uuid=uuid)
    assert {s.host.name for s in servers.values()} == {"tb-hv1", "tb-hv2"}

    # then each boots and reports its hostname and static address on the serial console
    for name, server in servers.items():
        address = server.addresses.get().address
        text = wait_console(
            billing_client,
            str(server.uuid),
            rf"paddock-guest hostname={name} ip={re.escape(address)} ready",
        )
        # the seed's SSH keys reached the guest (it reports how many it stored)
        if name == "alpha":
            assert "paddock-guest ssh_authorized_keys=2" in text, text[-2000:]
        else:
            assert "ssh_authorized_keys=" not in text
        assert server.domain_name in virsh(server.host, "list", "--name")
        # each host read its virtualization type at onboarding; the testbed forces TCG
        assert server.host.detected_virt_type in (VirtType.KVM, VirtType.QEMU)
        assert server.host.virt_type == VirtType.QEMU
        assert "<domain type='qemu'" in virsh(server.host, "dumpxml", server.domain_name)

    alpha = servers["alpha"]
    uuid = str(alpha.uuid)
    text = wait_console(billing_client, uuid, r"paddock-guest heartbeat=10\b")

    # one stats call per host: the guest's CPU time, disk and network counters (after a
    # few packets sent to it from its host: ARP and a TCP connect it answers)
    address = alpha.addresses.get().address
    netns = TestbedHost(int(alpha.host.name.removeprefix("tb-hv"))).netns
    poke = (
        "import socket\n"
        f"try: socket.create_connection(({address!r}, 22), timeout=5)\n"
        "except OSError: pass"
    )
    subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", poke], check=True)
    sample = get_backend(alpha.host).stats()
    guest = sample.guests[alpha.domain_name]
    assert guest.state == PowerState.RUNNING
    assert guest.cpu_time_ns and guest.cpu_time_ns > 0
    assert guest.vcpus == 1
    assert guest.memory_current_bytes == 192 * 1024**2
    vda = next(d for d in guest.disks if d.name == "vda")
    assert vda.rd_bytes and vda.wr_bytes and vda.rd_reqs and vda.wr_reqs, vda  # heartbeats
    assert len(guest.nics) == 1
    nic = guest.nics[0]
    assert nic.rx_bytes and nic.tx_bytes and nic.rx_packets and nic.tx_packets, nic

    # the disk persists: stop and start, and the heartbeat continues where it was
    act(billing_client, uuid, "stop")
    alpha.refresh_from_db()
    assert alpha.state == ServerState.STOPPED
    before = max(heartbeats_after_last_ready(console(billing_client, uuid)))
    assert before >= 10
    act(billing_client, uuid, "start")
    text = wait_console(billing_client, uuid, r"ready", count=2)
    text = wait_console(billing_client, uuid, r"boot=2 .*\n(?:.*\n)*?paddock-guest heartbeat=")
    after = heartbeats_after_last_ready(text)
    assert after and after[0] >= before, (before, after)

    # reboot: the guest comes back by itself
    act(billing_client, uuid, "reboot")
    wait_console(billing_client, uuid, r"ready", count=3)

    # pause freezes the guest, resume thaws it and the heartbeat goes on
    beats = len(re.findall(r"heartbeat=", console(billing_client, uuid)))
    act(billing_client, uuid, "pause")
    assert "paused" in virsh(alpha.host, "domstate", alpha.domain_name)
    act(billing_client, uuid, "resume")
    wait_console(billing_client, uuid, r"heartbeat=", count=beats + 1, timeout=60)

    # force off
    act(billing_client, uuid, "force-stop")
    assert "shut off" in virsh(alpha.host, "domstate", alpha.domain_name)

    # a guest's qemu killed behind Paddock's back: reconciliation notices
    beta = servers["beta"]
    pid = subprocess.run(
        ["pgrep", "-f", f"guest={beta.domain_name}"], capture_output=True, text=True
    ).stdout.split()
    assert pid, "no qemu process found for beta"
    subprocess.run(["kill", "-9", *pid], check=True)
    deadline = time.monotonic() + 30
    while True:
        report = reconcile_host(host=beta.host)
        beta.refresh_from_db()
        if beta.state != ServerState.RUNNING:
            break
        assert time.monotonic() < deadline, report
        time.sleep(1)
    assert beta.state in (ServerState.STOPPED, ServerState.ERROR)
    assert "Reconciled" in beta.state_message or "missing" in beta.state_message

    # terminate leaves nothing on the host and frees the addresses
    for server in servers.values():
        resp = billing_client.delete(f"/api/v1/servers/{server.uuid}/")
        assert resp.status_code == 202
        assert wait_job(billing_client, resp.json()["id"])["status"] == "succeeded"
        server.refresh_from_db()
        assert server.state == ServerState.TERMINATED
        assert server.domain_name not in virsh(server.host, "list", "--all", "--name")
        volumes = virsh(server.host, "vol-list", "paddock")
        assert server.domain_name not in volumes, volumes
        assert not IPAddress.objects.filter(server=server).exists()


def test_host_whose_libvirtd_dies_goes_offline(testbed):
    host = Host.objects.get(name="tb-hv2")
    tb = TestbedHost(2)
    pid = int(tb.pidfile.read_text())
    subprocess.run(["kill", "-9", str(pid)], check=True)
    try:
        report = reconcile_host(host=host)
        host.refresh_from_db()
        assert not report.reachable
        assert host.state == HostState.OFFLINE
        assert "cannot reach" in host.last_error
    finally:
        call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)
    host.refresh_from_db()
    assert host.state == HostState.ONLINE


def test_host_that_stops_answering_goes_offline(testbed):
    """Keepalive: a host that vanishes mid-connection (no RST, no FIN: its packets are
    dropped) is found out by libvirt's pings, not by a TCP timeout of many minutes."""
    host = Host.objects.get(name="tb-hv2")
    assert reconcile_host(host=host).reachable  # a connection is open (and cached)
    netns = TestbedHost(2).netns
    drop = "add rule inet paddock_testbed input iifname eth0 drop"
    subprocess.run(["ip", "netns", "exec", netns, "nft", drop], check=True)
    try:
        done: dict = {}
        call = threading.Thread(
            target=lambda: done.update(report=reconcile_host(host=host)), daemon=True
        )
        call.start()
        call.join(180)  # a bound against a hang, not a measure of speed
        assert not call.is_alive(), "a call on a silent host hangs"
        host.refresh_from_db()
        assert not done["report"].reachable
        assert host.state == HostState.OFFLINE
        assert "cannot reach" in host.last_error
    finally:
        call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)  # new firewall
    # the host answers again: a new connection, and the host is back
    assert reconcile_host(host=host).reachable
    host.refresh_from_db()
    assert host.state == HostState.ONLINE
