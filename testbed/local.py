"""The local hypervisor of the demo: `qemu:///system` on this machine, real QEMU guests.

`make run` (manage.py runstack --seed) calls `bring_up()` before the demo seed. When the
machine can (root, libvirtd and QEMU installed, PADDOCK_LOCAL_HYPERVISOR not `off`), it

- creates the guest bridge `pdkbr-local` with iproute2, holding the gateway address of
  PADDOCK_LOCAL_GUEST_SUBNET (default 10.252.0.1/24; no NAT, no iptables, no dnsmasq:
  the guests reach this machine and each other, nothing else);
- starts a libvirtd when none answers on `qemu:///system`: the testbed's QEMU settings
  (no security driver, no cgroup controllers, no virtlogd, root), its configuration in
  var/local-hypervisor/etc bind-mounted over /etc/libvirt in a private mount namespace,
  and the standard socket in /run/libvirt, so the URI is plain `qemu:///system`;
- defines the libvirt network `paddock` (forward mode bridge on `pdkbr-local`).

The seed (manage.py seed_demo) then asks `demo_mode()` whether real guests can be made,
and registers the host `local` when they can. On Ctrl-C, runstack calls `shut_down()`:
only when this run started the libvirtd (or adopted the one a killed run left, known by
its pid file) are the guests shut down (ACPI, then forced off), their servers recorded
as stopped (a reconciliation of the host), the libvirtd stopped and the bridge removed.
A libvirtd that was running before, such as a system service, is left alone, with its
guests running, as a real host would be.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from . import netns
from .hosts import QEMU_CONF  # the same QEMU settings as the testbed hosts

URI = "qemu:///system"
HOST_NAME = "local"
BRIDGE = "pdkbr-local"
NETWORK = "paddock"
POOL = "paddock"
TOOLS = ("libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "ip", "unshare")
SETTINGS = ("auto", "off")
START_TIMEOUT = 30.0
GUEST_SHUTDOWN_TIMEOUT = 20.0

LIBVIRTD_CONF = """\
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""


Say = Callable[[str], None]


def root_dir() -> Path:
    return Path(settings.VAR_DIR) / "local-hypervisor"


def guest_subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(settings.LOCAL_GUEST_SUBNET)


def gateway() -> ipaddress.IPv4Interface:
    net = guest_subnet()
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


def virt_type() -> str:
    """The demo host's virtualization type: TCG unless PADDOCK_VIRT_TYPE says kvm. A
    machine that offers KVM may still hang its guests under it (nested KVM in a VM, as on
    the machines this is developed on), and the demo must boot wherever it runs."""
    return "kvm" if settings.VIRT_TYPE == "kvm" else "qemu"


def accelerator() -> str:
    return "KVM" if virt_type() == "kvm" else "TCG"


# --- the decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What the machine offers. `answers` and `network` are None when not asked."""

    setting: str = "auto"
    root: bool = True
    missing: tuple[str, ...] = ()
    answers: bool | None = None
    network: bool | None = None


@dataclass(frozen=True)
class Mode:
    real: bool
    reason: str = ""

    def describe(self) -> str:
        if self.real:
            return f"real VMs on {URI} ({accelerator()})"
        return f"libvirt test driver: no real guests, because {self.reason}"


def unmet(probe: Probe) -> str:
    """Why no local hypervisor may even be tried, or "" when it may."""
    if probe.setting not in SETTINGS:
        return f"PADDOCK_LOCAL_HYPERVISOR is {probe.setting!r}, not one of {', '.join(SETTINGS)}"
    if probe.setting == "off":
        return "PADDOCK_LOCAL_HYPERVISOR=off"
    if not probe.root:
        return "Paddock is not running as root (libvirtd and the guest bridge need root)"
    if probe.missing:
        return f"{', '.join(probe.missing)} not installed (make run as root installs them)"
    return ""


def decide(probe: Probe) -> Mode:
    """Real guests on the local `qemu:///system`, or the test driver and why."""
    reason = unmet(probe)
    if reason:
        return Mode(real=False, reason=reason)
    if not probe.answers:
        return Mode(real=False, reason=f"no libvirtd answers on {URI} (make run starts one)")
    if not probe.network:
        return Mode(
            real=False,
            reason=f"the libvirt network {NETWORK!r} is not active on {URI} (make run defines it)",
        )
    return Mode(real=True)


def probe(*, ask: bool = True) -> Probe:
    """Look at this machine; with `ask`, also ask libvirtd (only when it may be tried)."""
    found = Probe(
        setting=str(settings.LOCAL_HYPERVISOR).strip().lower(),
        root=os.geteuid() == 0,
        missing=tuple(tool for tool in TOOLS if shutil.which(tool) is None),
    )
    if not ask or unmet(found):
        return found
    answers = _answers()
    return Probe(
        setting=found.setting,
        root=found.root,
        missing=found.missing,
        answers=answers,
        network=answers and _network_active(),
    )


def demo_mode() -> Mode:
    return decide(probe())


# --- libvirtd and the network -------------------------------------------------------------


def virsh(*args: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["virsh", "-q", "-c", URI, *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _answers() -> bool:
    try:
        return virsh("version", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _network_active() -> bool:
    info = virsh("net-info", NETWORK)
    return info.returncode == 0 and any(
        line.split(":", 1)[0].strip() == "Active" and line.split(":", 1)[1].strip() == "yes"
        for line in info.stdout.splitlines()
        if ":" in line
    )


def _pid_of_ours() -> int | None:
    """The pid in our pid file, when that process is a live libvirtd."""
    pidfile = root_dir() / "libvirtd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "libvirtd" else None


def _write_config() -> Path:
    etc = root_dir() / "etc"
    (etc / "qemu" / "networks").mkdir(parents=True, exist_ok=True)
    (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (etc / "qemu.conf").write_text(QEMU_CONF)
    return etc


def _start_libvirtd(preexec_fn: Callable[[], None] | None) -> subprocess.Popen:
    """libvirtd in the foreground, with var/local-hypervisor/etc as its /etc/libvirt."""
    etc = _write_config()
    pidfile = root_dir() / "libvirtd.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    script = (
        "set -e\n"
        f"mount --bind '{etc}' /etc/libvirt\n"
        f"exec libvirtd -f /etc/libvirt/libvirtd.conf -p '{pidfile}'\n"
    )
    with open(root_dir() / "libvirtd.log", "ab") as log:
        # unshare and sh exec, so this process is the libvirtd itself
        return subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own session: Ctrl-C reaches runstack, which stops the guests first
            start_new_session=True,
            preexec_fn=preexec_fn,
        )


def _log_tail(lines: int = 15) -> str:
    try:
        text = (root_dir() / "libvirtd.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _ensure_network() -> None:
    if virsh("net-info", NETWORK).returncode != 0:
        path = root_dir() / f"net-{NETWORK}.xml"
        path.write_text(
            f"<network><name>{NETWORK}</name><forward mode='bridge'/>"
            f"<bridge name='{BRIDGE}'/></network>"
        )
        virsh("net-define", str(path), check=True)
    if not _network_active():
        started = virsh("net-start", NETWORK)
        if started.returncode != 0 and "already active" not in started.stderr:
            raise RuntimeError(f"cannot start network {NETWORK}: {started.stderr.strip()}")
    virsh("net-autostart", NETWORK)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie counts as gone


def _kill(pid: int, timeout: float = 15) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


@dataclass
class LocalHypervisor:
    """What `bring_up()` found or did, and what `shut_down()` will undo."""

    mode: Mode
    say: Say = field(default=print, repr=False)
    pid: int | None = None  # the libvirtd this run owns (started or adopted)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def owned(self) -> bool:
        return self.pid is not None

    def shut_down(self) -> None:
        if not self.owned:
            if self.mode.real:
                self.say(f"{URI} was running before Paddock: left running, with its guests")
            return
        self._stop_guests()
        self._record_guest_states()
        assert self.pid is not None
        self.say(f"stopping libvirtd (pid {self.pid})")
        _kill(self.pid)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1)
        netns.delete_link(BRIDGE)
        self.pid = None

    def _stop_guests(self) -> None:
        running = virsh("list", "--name").stdout.split()
        if not running:
            return
        self.say(f"shutting down {len(running)} guest(s): {', '.join(running)}")
        for name in running:
            virsh("shutdown", name)
        deadline = time.monotonic() + GUEST_SHUTDOWN_TIMEOUT
        while running and time.monotonic() < deadline:
            time.sleep(0.5)
            running = virsh("list", "--name").stdout.split()
        for name in running:
            self.say(f"{name} did not power off in {GUEST_SHUTDOWN_TIMEOUT:.0f} s: forced off")
            virsh("destroy", name)

    def _record_guest_states(self) -> None:
        """The database learns from libvirt that the guests are off (a reconciliation)."""
        from hosting.models import Host
        from hosting.services.reconcile import reconcile_host

        host = Host.objects.filter(libvirt_uri=URI).first()
        if host is None:
            return
        try:
            report = reconcile_host(host=host)
        except Exception as exc:  # never keep the panel from stopping
            self.say(f"could not record the guests' states: {exc}")
            return
        if report.fixed:
            self.say(f"recorded as stopped: {', '.join(name for name, _, _ in report.fixed)}")


def bring_up(*, say: Say = print, preexec_fn: Callable[[], None] | None = None) -> LocalHypervisor:
    """Make `qemu:///system` usable for real guests when this machine allows it."""
    found = probe(ask=False)
    reason = unmet(found)
    if reason:
        return LocalHypervisor(mode=Mode(real=False, reason=reason), say=say)
    root_dir().mkdir(parents=True, exist_ok=True)
    gw = gateway()
    try:
        netns.ensure_bridge(BRIDGE, str(gw))
    except subprocess.CalledProcessError as exc:
        reason = f"the bridge {BRIDGE} could not be made: {(exc.stderr or '').strip() or exc}"
        say(reason)
        return LocalHypervisor(mode=Mode(real=False, reason=reason), say=say)
    local = LocalHypervisor(mode=Mode(real=False, reason="not started"), say=say)
    if _answers():
        local.pid = _pid_of_ours()
        if local.pid is not None:
            say(f"libvirtd (pid {local.pid}) of an earlier run answers on {URI}: using it")
        else:
            say(f"a libvirtd answers on {URI} already: using it (it is left running on exit)")
    else:
        local.proc = _start_libvirtd(preexec_fn)
        local.pid = local.proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers():
            if local.proc.poll() is not None or time.monotonic() > deadline:
                _kill(local.pid)
                local.pid = local.proc = None
                netns.delete_link(BRIDGE)
                tail = _log_tail()
                say(f"libvirtd did not start; the end of {root_dir() / 'libvirtd.log'}:\n{tail}")
                local.mode = Mode(real=False, reason="libvirtd did not start (see above)")
                return local
            time.sleep(0.2)
        say(f"started libvirtd (pid {local.pid}) on {URI}; log in {root_dir() / 'libvirtd.log'}")
    try:
        _ensure_network()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        local.mode = Mode(real=False, reason=f"the network {NETWORK!r}: {detail.strip()}")
        say(local.mode.reason)
        return local
    local.mode = decide(probe())
    say(f"network {NETWORK!r} on bridge {BRIDGE} ({gw}); guests: {local.mode.describe()}")
    return local
