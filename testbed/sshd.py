"""An OpenSSH server per testbed host: how the LXC backend reaches a container host.

Each host runs `/usr/sbin/sshd -D` inside its network namespace (so whatever a session
starts, lxc-start and its veths included, lives in the host's namespace), listening on the
host's control address only. Root logs in with the testbed's key, made once per testbed
under layout.ssh_dir() (`id_ed25519`); each host has its own host key, and
layout.ssh_known_hosts() lists them all. The firewall (hosts.FIREWALL) keeps guests off it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

from . import layout
from .layout import TestbedHost

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"  # sshd refuses to start without it

SSHD_CONFIG = """\
# testbed/sshd.py: the sshd of testbed host {name} (in network namespace {netns})
ListenAddress {address}:{port}
HostKey {host_key}
PidFile {pidfile}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
"""


class SshdError(RuntimeError):
    pass


def cgroup_mounts() -> str:
    """Shell lines that mount this machine's cgroup hierarchies again at /sys/fs/cgroup.

    `ip netns exec` gives its command a fresh /sys, without the cgroup file systems
    mounted under it; LXC, run from the host's sshd, needs them to set a container's
    limits, as on any real host. The same hierarchies (same options) mount again."""
    lines = []
    with open("/proc/self/mounts") as fh:
        for entry in fh:
            source, target, fstype, options = entry.split()[:4]
            if not target.startswith("/sys/fs/cgroup"):
                continue
            if fstype not in ("tmpfs", "cgroup", "cgroup2"):
                continue
            keep = ",".join(o for o in options.split(",") if o not in ("rw", "relatime"))
            opts = f"-o {shlex.quote(keep)} " if keep else ""
            lines.append(f"mkdir -p {target} && mount -t {fstype} {opts}{source} {target}")
    return "".join(line + "\n" for line in lines)


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def ensure_client_key() -> Path:
    """The testbed's root key pair and the authorized_keys file that holds it."""
    layout.ssh_dir().mkdir(parents=True, exist_ok=True)
    layout.ssh_dir().chmod(0o700)
    key = layout.ssh_key()
    _keygen(key, "paddock-testbed")
    layout.ssh_authorized_keys().write_text(key.with_suffix(".pub").read_text())
    return key


def _remember_host_key(host: TestbedHost) -> None:
    """Put this host's key in the testbed's known_hosts (replacing an older line)."""
    kind, blob = host.ssh_host_key.with_suffix(".pub").read_text().split()[:2]
    ip = str(host.address.ip)
    name = ip if layout.SSH_PORT == 22 else f"[{ip}]:{layout.SSH_PORT}"
    known = layout.ssh_known_hosts()
    lines = known.read_text().splitlines() if known.exists() else []
    lines = [line for line in lines if line.split(" ", 1)[0] != name]
    lines.append(f"{name} {kind} {blob}")
    known.write_text("\n".join(lines) + "\n")


def _pid(host: TestbedHost) -> int | None:
    try:
        pid = int(host.sshd_pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _banner(host: TestbedHost, timeout: float = 2) -> bool:
    """Whether an SSH server answers on the host's control address (from the control side)."""
    try:
        with socket.create_connection((str(host.address.ip), layout.SSH_PORT), timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def sshd_alive(host: TestbedHost) -> bool:
    return _pid(host) is not None and _banner(host)


def ensure_sshd(host: TestbedHost, timeout: float = 15) -> None:
    """Start the host's sshd unless it answers already; its namespace must exist."""
    ensure_client_key()
    host.dir.mkdir(parents=True, exist_ok=True)
    host.lxc_path.mkdir(parents=True, exist_ok=True)
    _keygen(host.ssh_host_key, f"root@{host.name}")
    _remember_host_key(host)
    if sshd_alive(host):
        return
    if not os.path.exists(SSHD):
        raise SshdError(f"{SSHD} is missing (Debian package openssh-server)")
    os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
    host.sshd_config.write_text(
        SSHD_CONFIG.format(
            name=host.name,
            netns=host.netns,
            address=host.address.ip,
            port=layout.SSH_PORT,
            host_key=host.ssh_host_key,
            pidfile=host.sshd_pidfile,
            authorized_keys=layout.ssh_authorized_keys(),
        )
    )
    check = subprocess.run([SSHD, "-t", "-f", str(host.sshd_config)], capture_output=True)
    if check.returncode != 0:
        raise SshdError(f"{host.name}: bad sshd_config: {check.stderr.decode().strip()}")
    sshd = shlex.join([SSHD, "-D", "-f", str(host.sshd_config), "-E", str(host.sshd_logfile)])
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, "sh", "-c", f"set -e\n{cgroup_mounts()}exec {sshd}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    host.sshd_pidfile.write_text(str(proc.pid))  # `ip netns exec` execs sshd: the same pid
    deadline = time.monotonic() + timeout
    while not _banner(host, timeout=1):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                proc.kill()
            tail = ""
            with contextlib.suppress(OSError):
                tail = host.sshd_logfile.read_text(errors="replace")[-2000:]
            raise SshdError(f"the sshd of {host.name} did not start:\n{tail}")
        time.sleep(0.1)
