#!/usr/bin/env python3
"""Paddock's LXC agent: run on a container host, it drives the LXC tools for one request.

Standard library only (Python 3.9 and later): the LXC backend (hosting/backends/
lxc_backend.py) uploads this file to the host once (named by its hash) and runs it over
SSH, or runs it in place for `lxc:///` hosts. One request per process:

    python3 lxc_agent.py OPERATION
    stdin:  one line of JSON (the arguments, always with "lxcpath"), then for operations
            that take a stream (put_template, import_rootfs, receive) the raw bytes
    stdout: the result as JSON, or for operations that give a stream (export_rootfs, send)
            the raw bytes
    exit:   0, or 1 with {"error": message, "kind": kind} on stderr (kind: "not_found",
            "invalid", "busy" or "failed")

A container NAME lives in LXCPATH/NAME: `config` (written here), `rootfs.img` (an ext4
image of the plan's disk size, mounted by LXC as a loop device), `console.log`, and
`snapshots/KEY.img`. Templates (root file system tarballs) are kept in
LXCPATH/.paddock/templates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
CHUNK = 1 << 20
CONSOLE_LOG_SIZE = 1 << 20  # LXC rotates the console log beyond this


class AgentError(Exception):
    def __init__(self, message: str, kind: str = "failed"):
        super().__init__(message)
        self.message = message
        self.kind = kind


def run(*args: str, check: bool = True, timeout: float = 120, **kwargs) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise AgentError(f"{args[0]} is not installed on this host.") from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"{args[0]} did not finish in {timeout:.0f} s.", "busy") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise AgentError(
            f"{' '.join(args[:3])} failed: {detail[-1] if detail else done.returncode}"
        )
    return done.stdout


class Host:
    def __init__(self, lxcpath: str):
        if not lxcpath.startswith("/") or ".." in lxcpath.split("/"):
            raise AgentError(f"Bad LXC path {lxcpath!r}.", "invalid")
        self.lxcpath = lxcpath.rstrip("/") or "/"
        os.makedirs(self.lxcpath, exist_ok=True)

    # --- paths ----------------------------------------------------------------------------
    def dir(self, name: str) -> str:
        if not NAME.match(name or ""):
            raise AgentError(f"Bad container name {name!r}.", "invalid")
        return os.path.join(self.lxcpath, name)

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.dir(name), "config"))

    def need(self, name: str) -> str:
        if not self.exists(name):
            raise AgentError(f"No container {name} on this host.", "not_found")
        return self.dir(name)

    def templates(self) -> str:
        path = os.path.join(self.lxcpath, ".paddock", "templates")
        os.makedirs(path, exist_ok=True)
        return path

    def lxc(self, tool: str, name: str, *args: str, check: bool = True, timeout=120) -> str:
        return run(tool, "-P", self.lxcpath, "-n", name, *args, check=check, timeout=timeout)

    # --- state ----------------------------------------------------------------------------
    def state(self, name: str) -> str:
        if not self.exists(name):
            return "missing"
        out = self.lxc("lxc-info", name, "-s", "-H", check=False).strip()
        return {"RUNNING": "running", "STOPPED": "stopped", "FROZEN": "paused"}.get(out, "other")

    def listing(self) -> dict:
        """{name: (state, pid)} of every container here, in one lxc-ls call."""
        out = run("lxc-ls", "-P", self.lxcpath, "-f", "-F", "NAME,STATE,PID", check=False)
        found = {}
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and self.exists(parts[0]):
                pid = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
                state = {"RUNNING": "running", "STOPPED": "stopped", "FROZEN": "paused"}
                found[parts[0]] = (state.get(parts[1], "other"), pid)
        for entry in os.listdir(self.lxcpath):  # lxc-ls skips a broken config
            if entry not in found and NAME.match(entry) and self.exists(entry):
                found[entry] = ("other", None)
        return found


def cgroup_v2() -> bool:
    return not os.path.isdir("/sys/fs/cgroup/memory") and os.path.exists(
        "/sys/fs/cgroup/cgroup.controllers"
    )


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as fh:
            return fh.read().strip() == "Y"
    except OSError:
        return False


def host_side_veth(name: str) -> str:
    """The host end of a container's interface: short (IFNAMSIZ) and stable."""
    return "pv" + hashlib.sha1(name.encode()).hexdigest()[:11]


# --- configuration ---------------------------------------------------------------------------


def limits(spec: dict) -> list:
    memory = int(spec["memory_mib"]) * 2**20
    swap = int(spec.get("swap_mib") or 0) * 2**20
    vcpus = max(1, int(spec["vcpus"]))
    period = 100000
    procs = int(spec.get("max_processes") or 0)
    if cgroup_v2():
        lines = [
            ("lxc.cgroup2.memory.max", memory),
            ("lxc.cgroup2.memory.swap.max", swap),
            ("lxc.cgroup2.cpu.max", f"{vcpus * period} {period}"),
            ("lxc.cgroup2.cpu.weight", min(10000, 100 * vcpus)),
        ]
        if procs:
            lines.append(("lxc.cgroup2.pids.max", procs))
        return lines
    lines = [
        ("lxc.cgroup.memory.limit_in_bytes", memory),
        ("lxc.cgroup.cpu.cfs_period_us", period),
        ("lxc.cgroup.cpu.cfs_quota_us", vcpus * period),
        ("lxc.cgroup.cpu.shares", 1024 * vcpus),
    ]
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        lines.append(("lxc.cgroup.memory.memsw.limit_in_bytes", memory + swap))
    if procs:
        lines.append(("lxc.cgroup.pids.max", procs))
    return lines


def render_config(host: Host, spec: dict, *, busybox: bool) -> str:
    name = spec["name"]
    directory = host.dir(name)
    lines = [
        ("lxc.include", "/usr/share/lxc/config/common.conf"),
        ("lxc.arch", "linux64"),
        ("lxc.uts.name", spec.get("hostname") or name),
        ("lxc.rootfs.path", f"loop:{directory}/rootfs.img"),
        ("lxc.autodev", 1),
        ("lxc.tty.max", 1),
        ("lxc.pty.max", 16),
        ("lxc.console.logfile", f"{directory}/console.log"),
        ("lxc.console.size", CONSOLE_LOG_SIZE),
        ("lxc.console.rotate", 1),
        ("lxc.apparmor.profile", "generated" if apparmor_enabled() else "unconfined"),
        ("lxc.net.0.type", "veth"),
        ("lxc.net.0.link", spec["network"]),
        ("lxc.net.0.flags", "up"),
        ("lxc.net.0.name", "eth0"),
        ("lxc.net.0.hwaddr", spec["mac_address"]),
        ("lxc.net.0.veth.pair", host_side_veth(name)),
    ]
    for address in spec.get("addresses") or []:
        key = "ipv6" if ":" in address else "ipv4"
        lines.append((f"lxc.net.0.{key}.address", address))
    if spec.get("gateway"):
        lines.append(("lxc.net.0.ipv4.gateway", spec["gateway"]))
    if busybox:  # busybox init halts on SIGUSR1 and reboots on SIGTERM
        lines += [("lxc.signal.halt", "SIGUSR1"), ("lxc.signal.reboot", "SIGTERM")]
    lines += limits(spec)
    header = f"# Paddock container {name} (written by the Paddock LXC agent)\n"
    return header + "".join(f"{key} = {value}\n" for key, value in lines)


def customize(root: str, spec: dict) -> None:
    """Hostname, name servers and root's SSH keys in an unpacked root file system."""
    hostname = spec.get("hostname") or spec["name"]
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "hostname"), "w") as fh:
        fh.write(hostname + "\n")
    with open(os.path.join(etc, "hosts"), "w") as fh:
        fh.write(f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
    if spec.get("nameservers"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(etc, "resolv.conf"))
        with open(os.path.join(etc, "resolv.conf"), "w") as fh:
            fh.write("".join(f"nameserver {ns}\n" for ns in spec["nameservers"]))
    keys = spec.get("ssh_keys") or []
    if keys:
        ssh = os.path.join(root, "root", ".ssh")
        os.makedirs(ssh, mode=0o700, exist_ok=True)
        path = os.path.join(ssh, "authorized_keys")
        existing = []
        if os.path.exists(path):
            with open(path) as fh:
                existing = fh.read().splitlines()
        with open(path, "w") as fh:
            fh.write("".join(k + "\n" for k in dict.fromkeys([*existing, *keys])))
        os.chmod(path, 0o600)


def is_busybox(root: str) -> bool:
    init = os.path.join(root, "sbin", "init")
    return os.path.islink(init) and os.readlink(init).endswith("busybox")


def unpack(tarball: str, root: str) -> None:
    run("tar", "-x", "--numeric-owner", "-p", "-f", tarball, "-C", root, timeout=1800)


def make_image(image: str, root: str, size_bytes: int) -> None:
    """An ext4 image of `size_bytes` (sparse) holding the tree at `root`."""
    tmp = image + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    with open(tmp, "wb") as fh:
        fh.truncate(size_bytes)
    run("mkfs.ext4", "-q", "-F", "-m", "0", "-d", root, "-L", "rootfs", tmp, timeout=1800)
    os.replace(tmp, image)


def image_size(directory: str, fallback: int) -> int:
    try:
        return os.path.getsize(os.path.join(directory, "rootfs.img"))
    except OSError:
        return fallback


def build_rootfs(host: Host, spec: dict, tarball: str) -> bool:
    """rootfs.img of container `spec` from `tarball`; True if its init is busybox."""
    directory = host.dir(spec["name"])
    staging = tempfile.mkdtemp(prefix=".staging-", dir=directory)
    try:
        os.chmod(staging, 0o755)
        unpack(tarball, staging)
        customize(staging, spec)
        busybox = is_busybox(staging)
        size = max(int(spec["disk_bytes"]), 64 * 2**20)
        make_image(os.path.join(directory, "rootfs.img"), staging, size)
        return busybox
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- operations ------------------------------------------------------------------------------


def op_info(host: Host, args: dict) -> dict:
    with open("/proc/meminfo") as fh:
        meminfo = fh.read()
    found = re.search(r"MemTotal:\s+(\d+)", meminfo)
    total_kib = int(found.group(1)) if found else 0
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    stat = os.statvfs(host.lxcpath)
    bridges = sorted(
        n for n in os.listdir("/sys/class/net") if os.path.isdir(f"/sys/class/net/{n}/bridge")
    )
    version = run("lxc-start", "--version", check=False).strip()
    return {
        "cpus": os.cpu_count() or 1,
        "memory_mib": total_kib // 1024,
        "disk_gib": stat.f_blocks * stat.f_frsize // 2**30,
        "cpu_model": model,
        "lxc_version": version,
        "kernel": os.uname().release,
        "bridges": bridges,
        "cgroup": "v2" if cgroup_v2() else "v1",
    }


def op_list(host: Host, args: dict) -> dict:
    return {name: state for name, (state, _pid) in host.listing().items()}


def op_state(host: Host, args: dict) -> str:
    return host.state(args["name"])


def op_needs_template(host: Host, args: dict) -> bool:
    """Whether creating container `name` needs template `volume` uploaded first (not when
    it exists, or a restored or imported root file system waits for it)."""
    directory = host.dir(args["name"])
    if host.exists(args["name"]) or os.path.exists(os.path.join(directory, "rootfs.restore.tar")):
        return False
    return not os.path.exists(os.path.join(host.templates(), safe(args["volume"])))


def safe(volume: str) -> str:
    if not NAME.match(volume or ""):
        raise AgentError(f"Bad template name {volume!r}.", "invalid")
    return volume


def receive_file(path: str, expected_sha256: str | None = None) -> int:
    """stdin (after the arguments) into `path`, atomically."""
    tmp = f"{path}.part-{os.getpid()}"
    digest = hashlib.sha256()
    size = 0
    with open(tmp, "wb") as fh:
        while True:
            chunk = sys.stdin.buffer.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            fh.write(chunk)
            size += len(chunk)
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        os.unlink(tmp)
        raise AgentError("The upload arrived damaged (checksum mismatch).")
    os.replace(tmp, path)
    return size


def op_put_template(host: Host, args: dict) -> int:
    return receive_file(os.path.join(host.templates(), safe(args["volume"])), args.get("sha256"))


def op_create(host: Host, args: dict) -> str:
    """Define container args["spec"] from its template (or a restored root file system
    waiting in rootfs.restore.tar); what exists already is kept."""
    spec = args["spec"]
    directory = host.dir(spec["name"])
    config = os.path.join(directory, "config")
    if os.path.exists(config) and os.path.exists(os.path.join(directory, "rootfs.img")):
        return "exists"
    os.makedirs(directory, exist_ok=True)
    pending = os.path.join(directory, "rootfs.restore.tar")
    source = pending
    if not os.path.exists(pending):
        source = os.path.join(host.templates(), safe(spec["template"]))
        if not os.path.exists(source):
            raise AgentError(f"Template {spec['template']} is not on this host.", "not_found")
    busybox = build_rootfs(host, spec, source)
    with open(config + ".tmp", "w") as fh:
        fh.write(render_config(host, spec, busybox=busybox))
    os.replace(config + ".tmp", config)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pending)
    return "created"


def op_start(host: Host, args: dict) -> str:
    name = args["name"]
    host.need(name)
    state = host.state(name)
    if state == "running":
        return state
    if state == "paused":
        host.lxc("lxc-unfreeze", name)
        return "running"
    log = os.path.join(host.dir(name), "lxc.log")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(log)
    try:
        host.lxc("lxc-start", name, "-d", "-l", "ERROR", "-o", log)
    except AgentError as exc:  # LXC says why in its log, not on stderr
        with contextlib.suppress(OSError), open(log) as fh:
            errors = [line.split(" - ", 1)[-1].strip() for line in fh if "ERROR" in line]
            if errors:
                exc.message = f"The container did not start: {'; '.join(errors[:4])}"
        raise
    return host.state(name)


def op_shutdown(host: Host, args: dict) -> str:
    name = args["name"]
    host.need(name)
    if host.state(name) == "stopped":
        return "stopped"
    host.lxc("lxc-stop", name, "--nowait")
    return host.state(name)


def op_force_off(host: Host, args: dict) -> str:
    name = args["name"]
    if not host.exists(name) or host.state(name) == "stopped":
        return "stopped"
    if host.state(name) == "paused":
        host.lxc("lxc-unfreeze", name, check=False)
    host.lxc("lxc-stop", name, "-k")
    return host.state(name)


def op_reboot(host: Host, args: dict) -> str:
    name = args["name"]
    host.need(name)
    if host.state(name) != "running":
        raise AgentError(f"Container {name} is not running.", "invalid")
    host.lxc("lxc-stop", name, "-r", "--nowait")
    return host.state(name)


def op_freeze(host: Host, args: dict) -> str:
    host.need(args["name"])
    if host.state(args["name"]) == "running":
        host.lxc("lxc-freeze", args["name"])
    return host.state(args["name"])


def op_unfreeze(host: Host, args: dict) -> str:
    host.need(args["name"])
    if host.state(args["name"]) == "paused":
        host.lxc("lxc-unfreeze", args["name"])
    return host.state(args["name"])


def op_destroy(host: Host, args: dict) -> str:
    name = args["name"]
    directory = host.dir(name)
    if not os.path.exists(directory):
        return "missing"
    if host.exists(name) and host.state(name) != "stopped":
        op_force_off(host, args)
    shutil.rmtree(directory)
    return "missing"


def op_console(host: Host, args: dict) -> str:
    path = os.path.join(host.dir(args["name"]), "console.log")
    max_bytes = int(args.get("max_bytes") or 65536)
    parts = []
    for candidate in (path + ".1", path):  # the rotated part first
        with contextlib.suppress(FileNotFoundError), open(candidate, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            parts.append(fh.read())
    return b"".join(parts)[-max_bytes:].decode("utf-8", errors="replace")


def op_set_bandwidth(host: Host, args: dict) -> str:
    """tc on the host end of the veth: its egress is what the container receives."""
    name = args["name"]
    host.need(name)
    dev = host_side_veth(name)
    run("tc", "qdisc", "del", "dev", dev, "root", check=False)
    kbps = args.get("kbps")
    if kbps and os.path.exists(f"/sys/class/net/{dev}"):
        run("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{int(kbps)}kbit",
            "burst", "32kb", "latency", "400ms")  # fmt: skip
    with open(os.path.join(host.dir(name), "bandwidth"), "w") as fh:
        fh.write(str(kbps or ""))
    return "ok"


# --- stats -----------------------------------------------------------------------------------


def read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            value = fh.read().strip()
        return None if value == "max" else int(value)
    except (OSError, ValueError):
        return None


def read_keyed(path: str) -> dict:
    found = {}
    with contextlib.suppress(OSError), open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                found[parts[0]] = int(parts[1])
    return found


def cgroups_of(pid: int) -> dict:
    """{controller: directory} of a process, for v1 controllers and "" (v2)."""
    found = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                base = f"/sys/fs/cgroup/{controller}" if controller else "/sys/fs/cgroup"
                if controller == "" and not cgroup_v2():
                    base = "/sys/fs/cgroup/unified"
                found[controller] = base + path
    return found


def blkio_v1(directory: str) -> dict:
    totals = {"rd_bytes": 0, "wr_bytes": 0, "rd_reqs": 0, "wr_reqs": 0}
    for filename, prefix in (("io_service_bytes", "bytes"), ("io_serviced", "reqs")):
        path = os.path.join(directory, f"blkio.throttle.{filename}")
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    key = ("rd_" if parts[1] == "Read" else "wr_") + prefix
                    totals[key] += int(parts[2])
    return totals


def io_v2(directory: str) -> dict:
    totals = {"rd_bytes": 0, "wr_bytes": 0, "rd_reqs": 0, "wr_reqs": 0}
    names = {"rbytes": "rd_bytes", "wbytes": "wr_bytes", "rios": "rd_reqs", "wios": "wr_reqs"}
    with contextlib.suppress(OSError), open(os.path.join(directory, "io.stat")) as fh:
        for line in fh:
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key in names and value.isdigit():
                    totals[names[key]] += int(value)
    return totals


def nic(name: str) -> dict:
    dev = host_side_veth(name)
    base = f"/sys/class/net/{dev}/statistics"
    # the host end's transmit is what the container receives
    return {
        "name": dev,
        "rx_bytes": read_int(f"{base}/tx_bytes"),
        "tx_bytes": read_int(f"{base}/rx_bytes"),
        "rx_packets": read_int(f"{base}/tx_packets"),
        "tx_packets": read_int(f"{base}/rx_packets"),
    }


def guest_stats(name: str, state: str, pid: int | None) -> dict:
    sample: dict = {"state": state}
    if state not in ("running", "paused") or not pid:
        return sample
    groups = cgroups_of(pid)
    if cgroup_v2() or "memory" not in groups:
        unified = groups.get("", "")
        cpu = read_keyed(os.path.join(unified, "cpu.stat")).get("usage_usec")
        limit = read_int(os.path.join(unified, "memory.max"))
        usage = read_int(os.path.join(unified, "memory.current"))
        mstat = read_keyed(os.path.join(unified, "memory.stat"))
        cache = mstat.get("inactive_file", 0)
        rss = mstat.get("anon")
        disk = io_v2(unified)
        sample["cpu_time_ns"] = cpu * 1000 if cpu is not None else None
    else:
        memory = groups["memory"]
        usage = read_int(os.path.join(memory, "memory.usage_in_bytes"))
        limit = read_int(os.path.join(memory, "memory.limit_in_bytes"))
        mstat = read_keyed(os.path.join(memory, "memory.stat"))
        cache = mstat.get("total_inactive_file", 0)
        rss = mstat.get("total_rss")
        disk = blkio_v1(groups.get("blkio", ""))
        sample["cpu_time_ns"] = read_int(os.path.join(groups.get("cpuacct", ""), "cpuacct.usage"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if limit is None or limit > total:
        limit = total
    used = max(0, (usage or 0) - cache)
    sample.update(
        memory_current_bytes=limit,
        memory_available_bytes=limit,
        memory_unused_bytes=max(0, limit - used),
        memory_rss_bytes=rss,
        disks=[dict(name="rootfs", **disk)],
        nics=[nic(name)],
    )
    return sample


def op_stats(host: Host, args: dict) -> dict:
    return {
        "timestamp": time.time(),
        "guests": {
            name: guest_stats(name, state, pid) for name, (state, pid) in host.listing().items()
        },
    }


# --- root file systems: snapshots, backups, moves ------------------------------------------------


@contextlib.contextmanager
def frozen(host: Host, name: str):
    """The container's processes stopped while the block runs (a consistent copy)."""
    thaw = host.state(name) == "running"
    if thaw:
        host.lxc("lxc-freeze", name)
    try:
        os.sync()
        yield
    finally:
        if thaw:
            host.lxc("lxc-unfreeze", name, check=False)


def copy_sparse(src: str, dst: str) -> None:
    run("cp", "--sparse=always", "--reflink=auto", src, dst + ".tmp", timeout=3600)
    os.replace(dst + ".tmp", dst)


def snapshots_dir(host: Host, name: str) -> str:
    path = os.path.join(host.need(name), "snapshots")
    os.makedirs(path, exist_ok=True)
    return path


def snapshot_order(directory: str) -> list:
    entries = [e for e in os.listdir(directory) if e.endswith(".img")]
    entries.sort(key=lambda e: os.stat(os.path.join(directory, e)).st_mtime_ns)
    return [e[: -len(".img")] for e in entries]


def op_snapshot_create(host: Host, args: dict) -> str:
    name, key = args["name"], safe(args["key"])
    target = os.path.join(snapshots_dir(host, name), key + ".img")
    if os.path.exists(target):
        return "exists"
    with frozen(host, name):
        copy_sparse(os.path.join(host.dir(name), "rootfs.img"), target)
    return "created"


def op_snapshot_revert(host: Host, args: dict) -> str:
    name, key = args["name"], safe(args["key"])
    directory = snapshots_dir(host, name)
    source = os.path.join(directory, key + ".img")
    if not os.path.exists(source):
        raise AgentError(f"Container {name} has no snapshot {key}.", "not_found")
    order = snapshot_order(directory)
    op_force_off(host, args)
    copy_sparse(source, os.path.join(host.dir(name), "rootfs.img"))
    for later in order[order.index(key) + 1 :]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, later + ".img"))
    return "reverted"


def op_snapshot_delete(host: Host, args: dict) -> str:
    if not host.exists(args["name"]):
        return "missing"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(snapshots_dir(host, args["name"]), safe(args["key"]) + ".img"))
    return "deleted"


def op_snapshot_list(host: Host, args: dict) -> list:
    return snapshot_order(snapshots_dir(host, args["name"]))


@contextlib.contextmanager
def mounted_copy(host: Host, name: str):
    """A read-only mount of a consistent copy of the container's root file system."""
    directory = host.need(name)
    work = tempfile.mkdtemp(prefix=".export-", dir=directory)
    copy = os.path.join(work, "rootfs.img")
    mountpoint = os.path.join(work, "mnt")
    os.mkdir(mountpoint)
    try:
        with frozen(host, name):
            copy_sparse(os.path.join(directory, "rootfs.img"), copy)
        run("fsck.ext4", "-p", copy, check=False)  # replay the journal of a live copy
        run("mount", "-o", "loop,ro", copy, mountpoint)
        try:
            yield mountpoint
        finally:
            run("umount", "-d", mountpoint, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stream(command: list) -> None:
    """Run `command` with its output as ours (binary, unbuffered)."""
    sys.stdout.flush()
    done = subprocess.run(command, stdout=sys.stdout.buffer, stderr=subprocess.PIPE)
    if done.returncode not in (0, 1):  # tar: 1 = a file changed as it was read
        raise AgentError(f"{command[0]} failed: {done.stderr.decode(errors='replace')[-300:]}")


def op_export_rootfs(host: Host, args: dict) -> None:
    """A tar of the container's root file system on stdout (consistent: taken frozen)."""
    with mounted_copy(host, args["name"]) as root:
        stream(["tar", "-c", "--numeric-owner", "--sparse", "-C", root,
                "--exclude=./lost+found", "."])  # fmt: skip


def op_disk_bytes(host: Host, args: dict) -> int:
    return image_size(host.need(args["name"]), 0)


def config_value(directory: str, key: str) -> str | None:
    with contextlib.suppress(OSError), open(os.path.join(directory, "config")) as fh:
        for line in fh:
            name, _, value = line.partition("=")
            if name.strip() == key:
                return value.strip()
    return None


def op_import_rootfs(host: Host, args: dict) -> str:
    """stdin (a tar, plain or gzip) becomes the container's root file system: at once for a
    defined container (stopped, its disk size and hostname kept), else when it is
    created (op_create, which customizes it for the new container)."""
    name = args["name"]
    directory = host.dir(name)
    os.makedirs(directory, exist_ok=True)
    pending = os.path.join(directory, "rootfs.restore.tar")
    receive_file(pending)
    if not host.exists(name):
        return "pending"
    if host.state(name) != "stopped":
        raise AgentError(f"Container {name} must be stopped to replace its disk.", "invalid")
    spec = {
        "name": name,
        "hostname": config_value(directory, "lxc.uts.name") or name,
        "disk_bytes": image_size(directory, 0),
    }
    build_rootfs(host, spec, pending)
    shutil.rmtree(os.path.join(directory, "snapshots"), ignore_errors=True)
    os.unlink(pending)
    return "replaced"


def op_send(host: Host, args: dict) -> None:
    """The stopped container (config, disk, snapshots, console log) as a sparse tar."""
    name = args["name"]
    host.need(name)
    if host.state(name) != "stopped":
        raise AgentError(f"Container {name} must be stopped to move it.", "invalid")
    stream(["tar", "-c", "--sparse", "--numeric-owner", "-C", host.lxcpath, name])


def op_receive(host: Host, args: dict) -> str:
    """A container sent by another host's `send`, its paths and bridge made this host's."""
    name = args["name"]
    directory = host.dir(name)
    if host.exists(name):
        raise AgentError(f"Container {name} exists on this host already.", "invalid")
    shutil.rmtree(directory, ignore_errors=True)
    incoming = tempfile.mkdtemp(prefix=".incoming-", dir=host.lxcpath)
    try:
        # fed from Python, not given our stdin's descriptor: the arguments' readline may
        # have buffered the first bytes of the stream already
        with tempfile.TemporaryFile() as errors:
            tar = subprocess.Popen(
                ["tar", "-x", "--sparse", "--numeric-owner", "-p", "-C", incoming],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            feed = tar.stdin
            assert feed is not None
            with contextlib.suppress(BrokenPipeError), feed:
                shutil.copyfileobj(sys.stdin.buffer, feed, CHUNK)
            if tar.wait() != 0:
                errors.seek(0)
                raise AgentError(f"tar failed: {errors.read().decode(errors='replace')[-300:]}")
        os.replace(os.path.join(incoming, name), directory)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    config = os.path.join(directory, "config")
    with open(config) as fh:
        text = fh.read()
    text = re.sub(r"(?m)^(lxc\.rootfs\.path = loop:).*$", rf"\g<1>{directory}/rootfs.img", text)
    text = re.sub(r"(?m)^(lxc\.console\.logfile = ).*$", rf"\g<1>{directory}/console.log", text)
    if args.get("network"):
        text = re.sub(r"(?m)^(lxc\.net\.0\.link = ).*$", rf"\g<1>{args['network']}", text)
    with open(config, "w") as fh:
        fh.write(text)
    return "received"


def op_exec(host: Host, args: dict) -> dict:
    """Run a command inside a running container (tests, the ready check)."""
    name = args["name"]
    host.need(name)
    done = subprocess.run(
        ["lxc-attach", "-P", host.lxcpath, "-n", name, "--", *args["command"]],
        capture_output=True,
        text=True,
        timeout=float(args.get("timeout") or 60),
    )
    return {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


OPERATIONS = {
    name[len("op_") :]: function
    for name, function in list(globals().items())
    if name.startswith("op_") and callable(function)
}


def main(argv: list) -> int:
    if len(argv) != 2 or argv[1] not in OPERATIONS:
        sys.stderr.write(json.dumps({"error": f"Unknown operation {argv[1:]}.", "kind": "invalid"}))
        return 1
    try:
        args = json.loads(sys.stdin.buffer.readline() or b"{}")
        host = Host(args.get("lxcpath") or "/var/lib/lxc")
        result = OPERATIONS[argv[1]](host, args)
    except AgentError as exc:
        sys.stderr.write(json.dumps({"error": exc.message, "kind": exc.kind}))
        return 1
    except Exception as exc:  # reported, not hidden: the backend shows it to the admin
        sys.stderr.write(json.dumps({"error": f"{type(exc).__name__}: {exc}", "kind": "failed"}))
        return 1
    if result is not None:
        sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
