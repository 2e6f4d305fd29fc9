"""The LXC backend against this machine's LXC, through the local transport (`lxc:///DIR`).

Real containers from the tiny template (guest/build-rootfs.sh) on a bridge this module
creates (pdk-ut<N>, 10.252.N.1/24) and deletes. One container is shared by the tests
that leave it running; the ones that stop, replace or move it use their own. Needs root
and lxc (scripts/system-packages.sh installs it for `make test`); skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from hosting.backends import DomainNotFound, GuestSpec, ImageSource, PowerState
from hosting.backends.lxc_backend import LxcBackend
from hosting.backends.lxc_transport import LocalTransport

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "paddock-tiny-rootfs.tar.gz"
READY = re.compile(r"paddock-guest hostname=(\S+) ip=(\S+) ready")
NET = os.getpid() % 250 + 1  # 10.252.NET.0/24 on bridge pdk-utNET
BRIDGE = f"pdk-ut{NET}"
MIB = 2**20


def missing_lxc() -> str:
    if os.geteuid() != 0:
        return "LXC containers need root"
    for tool in ("lxc-start", "mkfs.ext4", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/system-packages.sh --browser installs lxc)"
    return ""


pytestmark = pytest.mark.skipif(bool(missing_lxc()), reason=missing_lxc() or "-")


def wait_for(check: Callable[[], object], what: str, timeout: float = 15) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.fixture(scope="session")
def template() -> Path:
    out = ROOT / "var" / "images"  # build-rootfs.sh caches it there
    subprocess.run(["bash", str(ROOT / "guest" / "build-rootfs.sh"), str(out)], check=True)
    return out / TEMPLATE


@pytest.fixture(scope="module")
def bridge():
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"10.252.{NET}.1/24", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    yield BRIDGE
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


@pytest.fixture(scope="module")
def lxcpath(tmp_path_factory):
    path = tmp_path_factory.mktemp("lxc")
    yield path
    for config in path.glob("*/config"):  # a failed test's containers
        subprocess.run(["lxc-stop", "-k", "-P", str(path), "-n", config.parent.name],
                       capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def backend(lxcpath, bridge) -> LxcBackend:
    return LxcBackend(LocalTransport(str(lxcpath)), network=bridge, name="local")


_hosts = iter(range(10, 250))


@pytest.fixture(scope="module")
def make_spec(template, bridge) -> Callable[..., GuestSpec]:
    def make(hostname: str, memory_mib: int = 64, **extra) -> GuestSpec:
        ident = uuid.uuid4()
        return GuestSpec(
            name=f"paddock-{ident}",
            uuid=str(ident),
            vcpus=1,
            memory_mib=memory_mib,
            disk_gib=1,
            image=ImageSource(volume=TEMPLATE, source_path=str(template), format="tar"),
            network=bridge,
            mac_address="52:54:00:" + ":".join(f"{b:02x}" for b in ident.bytes[:3]),
            addresses=(f"10.252.{NET}.{next(_hosts)}/24",),
            gateway=f"10.252.{NET}.1",
            hostname=hostname,
            **extra,
        )

    return make


def ready_line(backend: LxcBackend, spec: GuestSpec, after: int = 0) -> tuple[str, str]:
    """(hostname, ip) of the first ready line past `after` characters of the console log."""

    def find():
        return READY.search(backend.console_log(spec.name)[after:])

    match = wait_for(find, f"ready line of {spec.hostname}")
    assert isinstance(match, re.Match)
    return match.group(1), match.group(2)


def sh(backend: LxcBackend, name: str, script: str) -> dict:
    return backend.exec(name, "/bin/sh", "-c", script)


def stopped(backend: LxcBackend, name: str, timeout: float = 10) -> None:
    wait_for(lambda: backend.state(name) == PowerState.STOPPED, f"stop of {name}", timeout)


@pytest.fixture(scope="module")
def running(backend, make_spec):
    """One container provisioned for the tests that leave it running."""
    spec = make_spec("ut-shared", max_processes=64)
    backend.provision(spec)
    ready_line(backend, spec)
    yield spec
    backend.deprovision(spec.name)


@pytest.fixture
def own(backend, make_spec):
    """A container of this test's own (deprovisioned afterwards)."""
    specs = []

    def provision(hostname: str, **extra) -> GuestSpec:
        spec = make_spec(hostname, **extra)
        backend.provision(spec)
        ready_line(backend, spec)
        specs.append(spec)
        return spec

    yield provision
    for spec in specs:
        backend.deprovision(spec.name)


# --- the host ----------------------------------------------------------------------------------


def test_host_info_lists_the_bridge(backend, bridge):
    info = backend.host_info()
    assert bridge in info.networks
    assert info.cpus >= 1 and info.memory_mib > 0 and info.disk_gib > 0
    assert info.virt_type == "lxc" and info.hypervisor_version.startswith("LXC ")


# --- a running container -----------------------------------------------------------------------


def test_provision_runs_the_container_and_it_reports_ready(backend, running, lxcpath):
    assert backend.state(running.name) == PowerState.RUNNING
    assert backend.domain_states()[running.name] == PowerState.RUNNING
    assert ready_line(backend, running) == ("ut-shared", running.addresses[0].split("/")[0])
    assert (lxcpath / running.name / "rootfs.img").stat().st_size == running.disk_bytes
    hostname = sh(backend, running.name, "cat /etc/hostname; hostname")
    assert hostname["stdout"].split() == ["ut-shared", "ut-shared"]


def test_stats_of_a_running_container(backend, running):
    def sample():
        return backend.stats().guests[running.name]

    first = sample()
    assert first.state == PowerState.RUNNING
    assert first.memory_current_bytes == running.memory_mib * MIB  # the plan's memory
    assert first.memory_rss_bytes is not None
    assert first.nics and first.nics[0].rx_bytes is not None
    assert first.nics[0].tx_bytes is not None
    assert first.disks and first.disks[0].name == "rootfs"
    sh(backend, running.name, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    assert first.cpu_time_ns is not None
    later = sample()
    assert later.cpu_time_ns is not None and later.cpu_time_ns > first.cpu_time_ns


def test_pause_and_resume(backend, running):
    before = backend.console_log(running.name)
    backend.pause(running.name)
    try:
        assert backend.state(running.name) == PowerState.PAUSED
        assert backend.domain_states()[running.name] == PowerState.PAUSED
    finally:
        backend.resume(running.name)
    assert backend.state(running.name) == PowerState.RUNNING
    assert sh(backend, running.name, "echo alive")["stdout"] == "alive\n"
    assert len(backend.console_log(running.name)) >= len(before)


def test_memory_limit_kills_a_process_past_the_plan(backend, running):
    # 200 MB held in a shell variable, with a 64 MiB plan and no swap
    done = sh(backend, running.name, "x=$(head -c 200000000 /dev/zero | tr '\\0' a)")
    assert done["status"] == 137, done  # SIGKILL from the OOM killer of the cgroup
    assert backend.state(running.name) == PowerState.RUNNING
    assert sh(backend, running.name, "cat /proc/1/comm")["stdout"].strip() == "init"


def test_process_limit_holds(backend, running):
    # the plan allows 64 processes: 100 sleeps cannot all start; the sleeps are then
    # killed with builtins only (no fork is left for anything else)
    done = sh(
        backend,
        running.name,
        "(n=0; while [ $n -lt 100 ]; do sleep 30 >/dev/null 2>&1 & n=$((n+1)); done;"
        " echo all started) 2>&1;"
        "for p in /proc/[0-9]*; do read -r c < $p/comm && [ $c = sleep ] && kill ${p#/proc/};"
        "done 2>/dev/null; true",
    )
    assert "can't fork" in done["stdout"] and "all started" not in done["stdout"], done
    assert sh(backend, running.name, "echo ok")["stdout"] == "ok\n"


# --- power -------------------------------------------------------------------------------------


def test_shutdown_returns_at_once_and_the_container_stops(backend, own):
    spec = own("ut-power")
    started = time.monotonic()
    backend.shutdown(spec.name)
    assert time.monotonic() - started < 5
    stopped(backend, spec.name)
    backend.start(spec.name)
    assert backend.state(spec.name) == PowerState.RUNNING
    backend.force_off(spec.name)
    assert backend.state(spec.name) == PowerState.STOPPED
    backend.force_off(spec.name)  # twice is harmless


def test_reboot_boots_the_container_again(backend, own):
    spec = own("ut-reboot")
    boots = sh(backend, spec.name, "cat /var/lib/paddock/boots")["stdout"].strip()
    seen = len(backend.console_log(spec.name))
    backend.reboot(spec.name)
    assert ready_line(backend, spec, after=seen)[0] == "ut-reboot"
    wait_for(lambda: backend.state(spec.name) == PowerState.RUNNING, "running after reboot")
    again = sh(backend, spec.name, "cat /var/lib/paddock/boots")["stdout"].strip()
    assert int(again) == int(boots) + 1


# --- disks: snapshots, backups, restores, moves -------------------------------------------------


def test_snapshot_create_list_revert_delete(backend, own):
    spec = own("ut-snap")
    assert sh(backend, spec.name, "echo before > /root/kept; sync")["status"] == 0
    backend.create_snapshot(spec.name, "s1")
    assert backend.snapshot_keys(spec.name) == ["s1"]
    assert sh(backend, spec.name, "echo after > /root/later; sync")["status"] == 0
    backend.create_snapshot(spec.name, "s2")
    assert backend.snapshot_keys(spec.name) == ["s1", "s2"]

    backend.revert_snapshot(spec.name, "s1")
    assert backend.snapshot_keys(spec.name) == ["s1"]  # later snapshots go with the revert
    backend.start(spec.name)
    ready_line(backend, spec)
    files = sh(backend, spec.name, "cat /root/kept; ls /root/later 2>&1")
    assert files["stdout"].startswith("before\n")
    assert "No such file" in files["stdout"]

    backend.delete_snapshot(spec.name, "s1")
    backend.delete_snapshot(spec.name, "s1")  # twice is harmless
    assert backend.snapshot_keys(spec.name) == []


def test_backup_then_replace_disk_then_offline_move(backend, own, tmp_path, lxcpath, bridge):
    spec = own("ut-disk")
    assert sh(backend, spec.name, "echo precious > /root/data; sync")["status"] == 0
    chunks: list[bytes] = []
    backup = backend.backup_disk(spec.name, checkpoint="b1", since=None, sink=chunks.append)
    tar_path = tmp_path / "backup.tar"
    tar_path.write_bytes(b"".join(chunks))
    assert backup.format == "tar" and backup.streamed_bytes == tar_path.stat().st_size
    assert backup.virtual_bytes == spec.disk_bytes
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        assert "./etc/hostname" in names
        data = tar.extractfile("./root/data")
        assert data is not None and data.read() == b"precious\n"

    # replace_disk on the stopped container brings the file back
    assert sh(backend, spec.name, "rm /root/data; sync")["status"] == 0
    backend.force_off(spec.name)
    backend.replace_disk(spec.name, source_path=str(tar_path))
    backend.start(spec.name)
    ready_line(backend, spec)
    assert sh(backend, spec.name, "cat /root/data")["stdout"] == "precious\n"

    # offline move to another lxcpath: the file goes along, nothing stays behind
    target_path = tmp_path / "lxc-target"
    target = LxcBackend(LocalTransport(str(target_path)), network=bridge, name="target")
    backend.force_off(spec.name)
    assert backend.check_migration(spec.name, target, live=False) == []
    moved = backend.migrate(spec.name, target, live=False)
    assert moved.live is False and moved.bytes_sent > 0
    assert backend.state(spec.name) == PowerState.MISSING
    assert not (lxcpath / spec.name).exists()
    try:
        assert target.state(spec.name) == PowerState.STOPPED
        seen = len(target.console_log(spec.name))
        target.start(spec.name)
        ready_line(target, spec, after=seen)
        assert sh(target, spec.name, "cat /root/data")["stdout"] == "precious\n"
    finally:
        target.deprovision(spec.name)
    assert target.state(spec.name) == PowerState.MISSING
    assert not (target_path / spec.name).exists()


def test_deprovision_leaves_nothing(backend, make_spec, lxcpath):
    spec = make_spec("ut-gone")
    backend.provision(spec)
    backend.deprovision(spec.name)
    assert backend.state(spec.name) == PowerState.MISSING
    assert spec.name not in backend.domain_states()
    assert not (lxcpath / spec.name).exists()
    backend.deprovision(spec.name)  # twice is harmless


# --- errors ------------------------------------------------------------------------------------


def test_an_unknown_container_is_missing_and_operations_on_it_raise(backend):
    name = f"paddock-{uuid.uuid4()}"
    assert backend.state(name) == PowerState.MISSING
    assert backend.console_log(name) == ""
    for operation in (backend.start, backend.shutdown, backend.reboot, backend.pause):
        with pytest.raises(DomainNotFound):
            operation(name)
    with pytest.raises(DomainNotFound):
        backend.create_snapshot(name, "s1")
    with pytest.raises(DomainNotFound):
        backend.exec(name, "true")
