"""The testbed itself: up twice is harmless, down leaves nothing behind."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import call_command

from hosting.models import Host
from testbed import layout
from testbed.hosts import LIBVIRTD_PORT, down_all, libvirtd_alive
from testbed.layout import TestbedHost

from ..factories import TEST_QUEUE

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith(layout.NETNS_PREFIX)]


def test_up_twice_then_down_after_a_killed_run(testbed):
    # given a testbed that is up; when it is brought up again, nothing changes
    pids = [TestbedHost(i).pidfile.read_text() for i in (1, 2)]
    call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)
    assert [TestbedHost(i).pidfile.read_text() for i in (1, 2)] == pids
    assert Host.objects.filter(name__startswith="tb-hv").count() == 2
    # when a run is killed (its libvirtd dies, its namespaces stay) and down runs
    subprocess.run(["kill", "-9", pids[0]], check=True)
    down_all()
    # then no namespace, link, daemon or directory of the testbed is left
    assert namespaces() == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert layout.BRIDGE not in links and layout.NETNS_PREFIX not in links
    assert not any(libvirtd_alive(TestbedHost(i)) for i in (1, 2))
    assert not layout.root_dir().exists()


GUEST_NS = f"{layout.NETNS_PREFIX}guest"  # removed with the testbed by down_all


def connects(address: str, port: int, *, netns: str | None = None) -> str:
    """Connect from the root namespace or from `netns`; "ok" or the error's name."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=10).close()\n"
        "    print('ok')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, "python3", "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


@pytest.fixture
def guest_on_the_bridge(testbed):
    """A stand-in guest: a namespace with an address on hv1's guest bridge, the gateway
    being hv1's namespace, exactly as a QEMU guest is attached."""
    tb = TestbedHost(1)
    net = layout.guest_subnet()
    subprocess.run(["ip", "netns", "add", GUEST_NS], check=True)
    run = [
        [
            "ip",
            "-n",
            tb.netns,
            "link",
            "add",
            "pdkgst0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            GUEST_NS,
        ],
        ["ip", "-n", tb.netns, "link", "set", "pdkgst0", "master", layout.GUEST_BRIDGE, "up"],
        [
            "ip",
            "-n",
            GUEST_NS,
            "addr",
            "add",
            f"{net.network_address + 250}/{net.prefixlen}",
            "dev",
            "eth0",
        ],
        ["ip", "-n", GUEST_NS, "link", "set", "eth0", "up"],
        ["ip", "-n", GUEST_NS, "route", "add", "default", "via", str(net.network_address + 1)],
    ]
    try:
        for cmd in run:
            subprocess.run(cmd, check=True)
        yield GUEST_NS
    finally:
        subprocess.run(["ip", "netns", "del", GUEST_NS], check=False)
        subprocess.run(["ip", "-n", tb.netns, "link", "del", "pdkgst0"], check=False)


def test_libvirtd_listens_to_the_control_side_only(guest_on_the_bridge):
    control = str(TestbedHost(1).address.ip)
    # the control side (this namespace, where Paddock's workers run) reaches libvirtd
    assert connects(control, LIBVIRTD_PORT) == "ok"
    # a guest reaches its gateway (the host's namespace): the network is really there
    gateway = str(layout.guest_subnet().network_address + 1)
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            TestbedHost(1).netns,
            "python3",
            "-c",
            f"import socket; s = socket.create_server(({gateway!r}, 7000)); print(flush=True); "
            "s.accept()",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert listener.stdout is not None
        listener.stdout.readline()  # listening
        assert connects(gateway, 7000, netns=guest_on_the_bridge) == "ok"
    finally:
        listener.kill()
        listener.wait()
    # but not libvirtd's unauthenticated listener, nor anything else on the control address
    assert connects(control, LIBVIRTD_PORT, netns=guest_on_the_bridge) == "ConnectionRefusedError"
    assert connects(control, 22, netns=guest_on_the_bridge) == "ConnectionRefusedError"
    # nor another host's listener through its own host
    other = str(TestbedHost(2).address.ip)
    assert connects(other, LIBVIRTD_PORT, netns=guest_on_the_bridge) in (
        "TimeoutError",
        "OSError",
        "ConnectionRefusedError",
    )
    assert connects(other, LIBVIRTD_PORT) == "ok"
