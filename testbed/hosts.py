"""Bring testbed hosts up and down: namespaces, libvirtd per host, networks and pools."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import layout, netns, sshd
from .layout import TestbedHost

# For tests only: no TLS, no authentication (the firewall below keeps guests out).
LIBVIRTD_CONF = """\
listen_tls = 0
listen_tcp = 1
listen_addr = "{address}"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
log_outputs = "3:stderr"
"""

# No cgroup controllers, no security driver, no virtlogd: the hosts run inside a container
# that has none of those to give. Virtualization type (kvm/qemu) is chosen per domain.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
"""


# libvirtd's TCP listener is unauthenticated (auth_tcp = "none"): anyone who reaches it
# owns the host. It listens on the host's control address only, and this ruleset in the
# host's namespace refuses it to everything but the control side: a guest on the guest
# bridge (whose gateway is this namespace) reaches neither the listener nor any other port
# of the control address, and nothing is forwarded from the guest bridge to the control
# network. The same goes for the host's sshd (testbed/sshd.py, root's door for the LXC
# backend), whichever address of the host a guest or container aims at. Applied on every
# `up` (replacing an older copy).
FIREWALL = """\
table inet paddock_testbed
delete table inet paddock_testbed
table inet paddock_testbed {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp dport {{ {port}, {ssh_port} }} iifname != {{ "eth0", "lo" }} reject with tcp reset
        iifname "{guest_bridge}" ip daddr {control} reject
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "{guest_bridge}" oifname "eth0" drop
    }}
}}
"""
LIBVIRTD_PORT = 16509


class TestbedError(RuntimeError):
    pass


def virsh(host: TestbedHost, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-q", "-c", host.uri, *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=60,
    )


def libvirtd_alive(host: TestbedHost) -> bool:
    try:
        pid = int(host.pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return virsh(host, "version", check=False).returncode == 0


def _write_config(host: TestbedHost) -> None:
    for src, _ in host.bind_mounts():
        src.mkdir(parents=True, exist_ok=True)
    etc = host.dir / "etc"
    if not (etc / "qemu").exists():
        shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True)
    (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(address=host.address.ip))
    (etc / "qemu.conf").write_text(QEMU_CONF)


# libvirt's interface QoS (domiftune, <bandwidth>) gives a guest's tap an htb class with
# an sfq leaf and an fw filter, and polices its outbound traffic with tc's police action.
# A kernel built without sch_sfq, cls_fw or act_police (this CI machine's has HTB, TBF,
# u32 and ingress) refuses them and every limit fails. On such a kernel the testbed's
# libvirtd finds the `tc` below first: the leaf becomes pfifo, the fw filter a u32 one
# (the htb rate still limits what reaches the guest, which the system suite measures)
# and, without act_police, outbound policing is left out. A real host has the modules
# and gets the real tc; on this machine's kernel nothing else changes.
TC_PROBES = {
    "sfq": [
        "qdisc add dev lo root handle 1: htb default 1",
        "class add dev lo parent 1: classid 1:1 htb rate 1mbit",
        "qdisc add dev lo parent 1:1 handle 2: sfq perturb 10",
    ],
    "fw": [
        "qdisc add dev lo root handle 1: htb default 1",
        "filter add dev lo parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
    ],
    "police": [
        "qdisc add dev lo ingress",
        "filter add dev lo parent ffff: protocol all u32 match u32 0 0 police rate 1mbit "
        "burst 10k drop flowid :1",
    ],
}
TC_WORKAROUNDS = {
    "sfq": 'case " $* " in *" sfq "*) '
    """set -- $(echo "$*" | sed 's/ sfq perturb [0-9]*/ pfifo/');; esac""",
    # (the fw filter sends marked packets to class 1:1, where htb's default sends all)
    "fw": 'case " $* " in *" fw "*) '
    """set -- $(echo "$*" | sed 's/ handle 1 fw flowid 1/ u32 match u32 0 0 flowid 1:1/');; esac""",
    "police": """case " $* " in *" police "*) exit 0;; esac""",
}


def missing_tc_features() -> list[str]:
    """What of libvirt's QoS this kernel lacks (tried in a scratch namespace)."""
    probe = "pdk-tcprobe"
    missing = []
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    subprocess.run(["ip", "netns", "add", probe], check=True)
    try:
        subprocess.run(["ip", "-n", probe, "link", "set", "lo", "up"], check=True)
        for feature, commands in TC_PROBES.items():
            for clean in ("qdisc del dev lo root", "qdisc del dev lo ingress"):
                subprocess.run(["tc", "-n", probe, *clean.split()], capture_output=True)
            for command in commands:
                done = subprocess.run(["tc", "-n", probe, *command.split()], capture_output=True)
                if done.returncode != 0:
                    missing.append(feature)
                    break
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return missing


def _tc_shim(host: TestbedHost) -> Path | None:
    """A directory holding the testbed's `tc` when the kernel needs one (see TC_PROBES)."""
    missing = missing_tc_features()
    real = shutil.which("tc")
    if not missing or real is None:
        return None
    shim = host.dir / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh", f"# testbed/hosts.py: this kernel lacks {', '.join(missing)}"]
    lines += [TC_WORKAROUNDS[feature] for feature in missing]
    lines.append(f'exec {real} "$@"')
    (shim / "tc").write_text("\n".join(lines) + "\n")
    (shim / "tc").chmod(0o755)
    return shim


def _start_libvirtd(host: TestbedHost, timeout: float = 30) -> None:
    mounts = "\n".join(
        f"mkdir -p {target} && mount --bind {src} {target}" for src, target in host.bind_mounts()
    )
    shim = _tc_shim(host)
    path = f'export PATH="{shim}:$PATH"\n' if shim else ""
    daemon = f"libvirtd --listen -f /etc/libvirt/libvirtd.conf -p {host.dir / 'daemon.pid'}"
    script = f"set -e\n{mounts}\n{path}exec {daemon}\n"
    with open(host.logfile, "ab") as log:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    host.pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not libvirtd_alive(host):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = host.logfile.read_text(errors="replace")[-2000:]
            raise TestbedError(f"libvirtd of {host.name} did not start:\n{tail}")
        time.sleep(0.3)


def _ensure_guest_bridge(host: TestbedHost) -> None:
    gateway = layout.guest_subnet().network_address + 1
    prefix = layout.guest_subnet().prefixlen
    if not netns.link_exists(layout.GUEST_BRIDGE, host.netns):
        netns.run("ip", "-n", host.netns, "link", "add", layout.GUEST_BRIDGE, "type", "bridge")
        netns.run(
            "ip", "-n", host.netns, "addr", "add", f"{gateway}/{prefix}", "dev", layout.GUEST_BRIDGE
        )
    netns.run("ip", "-n", host.netns, "link", "set", layout.GUEST_BRIDGE, "up")


def _firewall(host: TestbedHost) -> None:
    rules = FIREWALL.format(
        port=LIBVIRTD_PORT,
        ssh_port=layout.SSH_PORT,
        guest_bridge=layout.GUEST_BRIDGE,
        control=host.address.ip,
    )
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, "nft", "-f", "-"],
        input=rules,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise TestbedError(f"{host.name}: cannot apply the firewall: {done.stderr.strip()}")


def _define(host: TestbedHost, kind: str, name: str, xml: str) -> None:
    """Define, start and autostart a network or pool unless it exists."""
    if virsh(host, f"{kind}-info", name, check=False).returncode != 0:
        path = host.dir / f"{kind}-{name}.xml"
        path.write_text(xml)
        virsh(host, f"{kind}-define", str(path))
        if kind == "pool":
            virsh(host, "pool-build", name, check=False)
    started = virsh(host, f"{kind}-start", name, check=False)
    if started.returncode != 0 and "already active" not in started.stderr:
        raise TestbedError(f"{host.name}: cannot start {kind} {name}: {started.stderr.strip()}")
    virsh(host, f"{kind}-autostart", name, check=False)


def _pool_xml(name: str, path: Path | str) -> str:
    return f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"


def up_host(host: TestbedHost) -> None:
    from django.conf import settings

    bridge_cidr = str(layout.bridge_address())
    netns.ensure_bridge(layout.BRIDGE, bridge_cidr)
    netns.ensure_namespace(
        netns=host.netns, veth=host.veth, bridge=layout.BRIDGE, address=str(host.address)
    )
    _ensure_guest_bridge(host)
    _firewall(host)
    if not libvirtd_alive(host):
        _write_config(host)
        _start_libvirtd(host)
    try:
        sshd.ensure_sshd(host)
    except (sshd.SshdError, subprocess.CalledProcessError) as exc:
        raise TestbedError(str(exc)) from exc
    _define(
        host,
        "net",
        layout.GUEST_NETWORK,
        f"<network><name>{layout.GUEST_NETWORK}</name><forward mode='bridge'/>"
        f"<bridge name='{layout.GUEST_BRIDGE}'/></network>",
    )
    _define(
        host,
        "pool",
        layout.HOST_POOL,
        _pool_xml(layout.HOST_POOL, Path(settings.STORAGE_ROOT) / layout.HOST_POOL),
    )
    layout.shared_pool_dir().mkdir(parents=True, exist_ok=True)
    _define(
        host, "pool", layout.SHARED_POOL, _pool_xml(layout.SHARED_POOL, layout.shared_pool_dir())
    )


def _kill(pids: list[int], timeout: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours counts as gone
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _stop_containers(name: str) -> None:
    """Kill the LXC containers of the testbed host in namespace `name` (pdk-hvN: the
    containers under hvN/lxc). Their monitors' command sockets are abstract sockets of
    that namespace: lxc-info and lxc-stop must run there."""
    index = name.removeprefix(layout.NETNS_PREFIX)
    if not index.isdigit():
        return
    lxc_path = TestbedHost(int(index)).lxc_path
    for config in sorted(lxc_path.glob("*/config")):
        in_netns = ["ip", "netns", "exec", name]
        where = ["-P", str(lxc_path), "-n", config.parent.name]
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            state = subprocess.run(
                [*in_netns, "lxc-info", *where, "-s"], capture_output=True, text=True, timeout=30
            ).stdout
            if "STOPPED" not in state:
                stop = [*in_netns, "lxc-stop", "-k", *where]
                subprocess.run(stop, capture_output=True, timeout=30)


def down_all() -> list[str]:
    """Remove every testbed namespace, process, link and directory, also a killed run's."""
    removed = []
    for name in netns.list_namespaces(layout.NETNS_PREFIX):
        _stop_containers(name)
        _kill(netns.namespace_pids(name))
        netns.delete_namespace(name)
        removed.append(name)
    for pattern in ("hv*/libvirtd.pid", "hv*/sshd.pid"):
        for pidfile in layout.root_dir().glob(pattern):
            with contextlib.suppress(ValueError, OSError):
                _kill([int(pidfile.read_text())])
    out = netns.run("ip", "-o", "link", "show").stdout
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(layout.NETNS_PREFIX):
            netns.delete_link(name)
    netns.delete_link(layout.BRIDGE)
    shutil.rmtree(layout.root_dir(), ignore_errors=True)
    return removed
