"""The testbed itself: up twice is harmless, down leaves nothing behind."""

from __future__ import annotations

import subprocess
import tarfile
import time
from io import StringIO

import paramiko
import pytest
from django.core.management import call_command

from hosting.models import Host
from testbed import layout
from testbed.hosts import LIBVIRTD_PORT, down_all, libvirtd_alive
from testbed.layout import TestbedHost
from testbed.sshd import sshd_alive

from ..factories import TEST_QUEUE

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith(layout.NETNS_PREFIX)]


def test_up_twice_then_down_after_a_killed_run(testbed):
    # given a testbed that is up; when it is brought up again, nothing changes
    pids = [TestbedHost(i).pidfile.read_text() for i in (1, 2)]
    sshd_pids = [TestbedHost(i).sshd_pidfile.read_text() for i in (1, 2)]
    call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)
    assert [TestbedHost(i).pidfile.read_text() for i in (1, 2)] == pids
    assert [TestbedHost(i).sshd_pidfile.read_text() for i in (1, 2)] == sshd_pids
    assert Host.objects.filter(name__startswith="tb-hv").count() == 2
    status = StringIO()
    call_command("testbed", "status", stdout=status)
    assert status.getvalue().splitlines() == [
        f"tb-hv{i}: {TestbedHost(i).uri} libvirtd up, sshd up" for i in (1, 2)
    ]
    # when a run is killed (its libvirtd dies, its namespaces stay) and down runs
    subprocess.run(["kill", "-9", pids[0]], check=True)
    down_all()
    # then no namespace, link, daemon or directory of the testbed is left
    assert namespaces() == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert layout.BRIDGE not in links and layout.NETNS_PREFIX not in links
    assert not any(libvirtd_alive(TestbedHost(i)) for i in (1, 2))
    assert not any(sshd_alive(TestbedHost(i)) for i in (1, 2))
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


def ssh(tb: TestbedHost, command: str) -> tuple[int, str, str]:
    """Run `command` on a testbed host as the LXC backend does: root, the testbed's key,
    the host key checked against the testbed's known_hosts."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(layout.ssh_known_hosts()))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        str(tb.address.ip),
        port=layout.SSH_PORT,
        username="root",
        key_filename=str(layout.ssh_key()),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    try:
        _, stdout, stderr = client.exec_command(command, timeout=60)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
    finally:
        client.close()


def test_each_host_serves_ssh_from_inside_its_namespace(testbed):
    for index in (1, 2):
        # given a testbed host; when root logs in with the testbed's key
        tb, other = TestbedHost(index), TestbedHost(3 - index)
        code, out, err = ssh(tb, "ip -o addr show")
        # then the session runs in the host's namespace: its own address and guest bridge
        assert code == 0, err
        assert f" {tb.address.ip}/" in out and f" {other.address.ip}/" not in out
        assert f": {layout.GUEST_BRIDGE} " in out
        # and the LXC tools answer for the host's lxcpath
        code, out, err = ssh(tb, f"lxc-ls -P {tb.lxc_path} && echo lxc-ls-ok")
        assert code == 0 and out.strip() == "lxc-ls-ok", err
        assert tb.ct_uri == f"lxc+ssh://root@{tb.address.ip}:22{tb.lxc_path}"


def test_a_stranger_key_is_refused(testbed, tmp_path):
    key = paramiko.Ed25519Key.from_private_key(StringIO(_stranger_key(tmp_path)))
    client = paramiko.SSHClient()
    client.load_host_keys(str(layout.ssh_known_hosts()))
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            str(TestbedHost(1).address.ip),
            username="root",
            pkey=key,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def _stranger_key(tmp_path) -> str:
    path = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text()


CT_CONFIG = """\
lxc.include = /usr/share/lxc/config/common.conf
lxc.uts.name = ct-probe
lxc.rootfs.path = dir:{rootfs}
lxc.net.0.type = veth
lxc.net.0.link = {bridge}
lxc.net.0.name = eth0
lxc.net.0.flags = up
lxc.net.0.ipv4.address = {address}
lxc.net.0.ipv4.gateway = {gateway}
lxc.apparmor.profile = unconfined
lxc.autodev = 1
lxc.signal.halt = SIGUSR1
lxc.signal.reboot = SIGTERM
lxc.console.logfile = {console}
"""


def test_a_container_started_over_ssh_joins_the_guest_bridge(testbed, rootfs_template):
    # given the container template unpacked in hv1's lxcpath, on hv1's guest bridge
    tb = TestbedHost(1)
    net = layout.guest_subnet()
    address, gateway = net.network_address + 240, net.network_address + 1
    home = tb.lxc_path / "ct-probe"
    (home / "rootfs").mkdir(parents=True)
    with tarfile.open(rootfs_template) as tar:
        tar.extractall(home / "rootfs", filter="fully_trusted")
    console = home / "console.log"
    (home / "config").write_text(
        CT_CONFIG.format(
            rootfs=home / "rootfs",
            bridge=layout.GUEST_BRIDGE,
            address=f"{address}/{net.prefixlen}",
            gateway=gateway,
            console=console,
        )
    )
    where = f"-P {tb.lxc_path} -n ct-probe"
    # when it is started over SSH
    code, _, err = ssh(tb, f"lxc-start {where} -d")
    assert code == 0, err
    try:
        # then it prints the guest's ready line with its address, and reaches its gateway
        deadline = time.monotonic() + 20
        log = ""
        while "reachable" not in log and time.monotonic() < deadline:
            time.sleep(0.2)
            log = console.read_text() if console.exists() else ""
        assert f"paddock-guest hostname=ct-probe ip={address} ready" in log
        assert f"paddock-guest gateway={gateway} reachable" in log
        code, out, _ = ssh(tb, f"lxc-ls -P {tb.lxc_path} --running")
        assert out.split() == ["ct-probe"]
        # but neither sshd nor libvirtd on its host's control address
        probe = (
            f"for port in 22 16509; do nc -w 3 {tb.address.ip} $port </dev/null >/dev/null 2>&1"
            " && echo open || echo closed; done"
        )
        code, out, err = ssh(tb, f"lxc-attach {where} -- sh -c '{probe}'")
        assert out.split() == ["closed", "closed"], err
    finally:
        # and it stops on lxc-stop (busybox init halts on SIGUSR1)
        code, _, err = ssh(tb, f"lxc-stop {where} -t 10")
    assert code == 0, err
    code, out, _ = ssh(tb, f"lxc-info {where} -s")
    assert "STOPPED" in out


def test_up_with_containers_registers_each_host_as_a_container_host(container_hosts):
    # given the testbed up with --containers: each host is a VM host and a container host
    for index in (1, 2):
        tb = TestbedHost(index)
        host = Host.objects.get(name=tb.ct_name)
        # read through the LXC backend over the host's sshd
        assert (host.kind, host.backend, host.libvirt_uri) == ("container", "lxc", tb.ct_uri)
        assert host.state == "online", host.last_error
        assert host.network == layout.GUEST_BRIDGE and host.cpus > 0 and host.memory_mib > 0
    status = StringIO()
    call_command("testbed", "status", stdout=status)
    assert f"tb-ct1: {TestbedHost(1).ct_uri} sshd up" in status.getvalue().splitlines()
