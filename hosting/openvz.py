"""OpenVZ container configurations (ve.conf): read them without running them, and map
them onto what a Paddock container server gets (hosting/services/imports.py uses this).

A ve.conf is a shell fragment of plain assignments, `KEY="value"`, written by vzctl.
`parse_ve_conf` accepts assignments only (double-quoted, single-quoted or plain words,
`export` allowed, comments and blank lines skipped) and refuses anything else (a command,
a command substitution, a pipe) with the line number: nothing is ever run. `$VEID` and
the like inside double quotes are kept as written (they only occur in paths, which are
not mapped).

`read_settings` turns the dict into `OpenVZSettings` (sizes in MiB and GiB), and
`import_report` compares them with the chosen plan: a server's resources come from its
plan, so the container gets the plan's memory, swap, CPUs, disk and process limit, and
each line says what the OpenVZ value was and what it became. Every other parameter is
listed as not mapped, with the reason.

Pure: no Django models (the plan is anything with the Plan's attributes).
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

PAGE = 4096
KIB, MIB, GIB = 1024, 1024**2, 1024**3
SUFFIXES = {"K": KIB, "M": MIB, "G": GIB, "T": 1024**4}
# values vzctl writes for "no limit" (LONG_MAX on 32- and 64-bit hosts)
UNLIMITED_NUMBERS = {2**31 - 1, 2**63 - 1}

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.,:/@%+=-]*")


class OpenVZConfigError(ValueError):
    """A ve.conf that is not plain assignments, or a value that cannot be read."""


# --- parsing -----------------------------------------------------------------------------------


def _value(text: str, lineno: int) -> str:
    """The value of one assignment (what follows `KEY=`), with an optional trailing
    comment; quotes removed, escapes of double quotes applied, nothing expanded."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n and not text[i].isspace():
        char = text[i]
        if char == '"':
            i += 1
            while True:
                if i >= n:
                    raise OpenVZConfigError(f"line {lineno}: unterminated double quote")
                char = text[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    out.append(text[i + 1])
                    i += 2
                    continue
                if char == "`" or text.startswith("$(", i):
                    raise OpenVZConfigError(f"line {lineno}: command substitution refused")
                out.append(char)
                i += 1
        elif char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise OpenVZConfigError(f"line {lineno}: unterminated single quote")
            out.append(text[i + 1 : end])
            i = end + 1
        else:
            word = _PLAIN_WORD.match(text, i)
            assert word is not None
            if word.end() == i:
                raise OpenVZConfigError(
                    f"line {lineno}: {char!r} is not allowed outside quotes (only plain "
                    "assignments are read)"
                )
            out.append(word.group())
            i = word.end()
    rest = text[i:].strip()
    if rest and not rest.startswith("#"):
        raise OpenVZConfigError(f"line {lineno}: unexpected {rest[:20]!r} after the value")
    return "".join(out)


def parse_ve_conf(text: str) -> dict[str, str]:
    """The assignments of a ve.conf, in order (a later one of a key wins, as in a shell)."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            raise OpenVZConfigError(
                f'line {lineno}: not a plain assignment (KEY="value"): {line[:40]!r}'
            )
        values[match.group(1)] = _value(match.group(2), lineno)
    return values


# --- sizes -------------------------------------------------------------------------------------


def _amount(text: str, unit: int, what: str) -> int | None:
    """Bytes of one OpenVZ amount: a number of `unit`s, or with a K/M/G/T suffix (bytes),
    or P (pages); None for unlimited."""
    word = text.strip()
    if word.lower() == "unlimited":
        return None
    match = re.fullmatch(r"(\d+)([KMGTPkmgtp]?)", word)
    if match is None:
        raise OpenVZConfigError(f"{what}: cannot read {text!r}")
    number, suffix = int(match.group(1)), match.group(2).upper()
    if not suffix and number in UNLIMITED_NUMBERS:
        return None
    if suffix == "P":
        return number * PAGE
    return number * SUFFIXES[suffix] if suffix else number * unit


def barrier_limit(text: str, unit: int, what: str) -> tuple[int | None, int | None]:
    """(barrier, limit) in bytes of "barrier:limit" (or one value for both)."""
    parts = text.split(":")
    if len(parts) > 2 or not text.strip():
        raise OpenVZConfigError(f"{what}: cannot read {text!r}")
    barrier = _amount(parts[0], unit, what)
    limit = _amount(parts[-1], unit, what)
    return barrier, limit


def _count(text: str, what: str) -> int | None:
    """A plain number (a count), None for unlimited or 0."""
    word = text.strip().split(":")[-1]
    if word.lower() == "unlimited":
        return None
    if not word.isdigit():
        raise OpenVZConfigError(f"{what}: cannot read {text!r}")
    number = int(word)
    return None if number == 0 or number in UNLIMITED_NUMBERS else number


def _mib(value: int | None) -> int | None:
    return None if value is None else math.ceil(value / MIB)


def _gib(value: int | None) -> int | None:
    return None if value is None else math.ceil(value / GIB)


# --- what a ve.conf says -------------------------------------------------------------------------


@dataclass
class OpenVZSettings:
    """What Paddock reads from a ve.conf (None: not set, or unlimited)."""

    hostname: str = ""
    addresses: list[str] = field(default_factory=list)  # without a mask
    memory_mib: int | None = None
    swap_mib: int | None = None
    vcpus: int | None = None
    cpu_limit_percent: int | None = None
    cpu_units: int | None = None
    disk_gib: int | None = None  # the barrier (the soft limit the container was sold)
    disk_limit_gib: int | None = None
    max_processes: int | None = None
    nameservers: list[str] = field(default_factory=list)
    onboot: bool | None = None
    ostemplate: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    def first_address(self, version: int) -> str | None:
        return next((a for a in self.addresses if ipaddress.ip_address(a).version == version), None)


# the parameters Paddock maps (read_settings), in report order
MAPPED = (
    "HOSTNAME",
    "IP_ADDRESS",
    "PHYSPAGES",
    "SWAPPAGES",
    "CPUS",
    "CPULIMIT",
    "CPUUNITS",
    "DISKSPACE",
    "NUMPROC",
    "NAMESERVER",
    "ONBOOT",
    "OSTEMPLATE",
)

# why the others are not (the rest: "Paddock has no equivalent")
NOT_MAPPED_REASONS = {
    "DISKINODES": "the ext4 root file system is made with default inode counts",
    "QUOTATIME": "no disk quota grace period: the disk is a fixed-size ext4 image",
    "QUOTAUGIDLIMIT": "no second-level (per user) quotas inside the container",
    "KMEMSIZE": "kernel memory is counted in the cgroup memory limit",
    "LOCKEDPAGES": "locked memory is counted in the cgroup memory limit",
    "PRIVVMPAGES": "no separate limit on allocated (virtual) memory; the plan's memory applies",
    "SHMPAGES": "shared memory is counted in the cgroup memory limit",
    "VMGUARPAGES": "no memory guarantee: the plan's memory is a limit",
    "OOMGUARPAGES": "no memory guarantee: the plan's memory is a limit",
    "NUMTCPSOCK": "no per-container socket limits",
    "NUMOTHERSOCK": "no per-container socket limits",
    "TCPSNDBUF": "no per-container socket buffer limits",
    "TCPRCVBUF": "no per-container socket buffer limits",
    "OTHERSOCKBUF": "no per-container socket buffer limits",
    "DGRAMRCVBUF": "no per-container socket buffer limits",
    "NUMFLOCK": "no per-container file lock limit",
    "NUMPTY": "LXC gives the container 16 ptys",
    "NUMSIGINFO": "no per-container signal queue limit",
    "NUMFILE": "no per-container open file limit",
    "DCACHESIZE": "the dentry cache is counted in the cgroup memory limit",
    "NUMIPTENT": "no per-container iptables entry limit",
    "IPTABLES": "netfilter modules are the host's; no per-container selection",
    "NETFILTER": "netfilter modules are the host's; no per-container selection",
    "FEATURES": "OpenVZ features (nfs, ppp, sysfs...) have no LXC equivalent here",
    "CAPABILITY": "the container gets LXC's default capabilities",
    "DEVICES": "no extra device access: LXC's default device list",
    "DEVNODES": "no extra device nodes: LXC's default device list",
    "VE_ROOT": "a path on the OpenVZ host: the container lives in Paddock's lxcpath",
    "VE_PRIVATE": "a path on the OpenVZ host: the private area is the archive",
    "VE_LAYOUT": "the disk is an ext4 image whatever the OpenVZ layout (simfs, ploop)",
    "IOPRIO": "no disk I/O priority per container",
    "IOLIMIT": "no disk I/O limit per container",
    "IOPSLIMIT": "no disk I/O limit per container",
    "CPUMASK": "CPUs are not pinned: the container gets a quota of the plan's vCPUs",
    "NODEMASK": "no NUMA placement per container",
    "NETIF": "veth interfaces of OpenVZ are replaced by one Paddock interface (eth0)",
    "SEARCHDOMAIN": "the search domain stays as the archive's /etc/resolv.conf has it",
    "ORIGIN_SAMPLE": "the sample config vzctl started from: informational only",
    "MEMINFO": "the container sees the host's /proc/meminfo",
    "BOOTORDER": "servers start in no set order",
    "DISABLED": "a Paddock server is started when it is provisioned",
    "NAME": "the server is known by its hostname",
    "DESCRIPTION": "no free-text description on servers",
    "HA_ENABLE": "Paddock's own high availability applies instead",
    "HA_PRIO": "Paddock's own high availability applies instead",
    "VEID": "the server gets a Paddock id",
    "VE_TYPE": "informational only",
    "STOP_TIMEOUT": "the SHUTDOWN_TIMEOUT setting applies",
    "LOCAL_UID": "no user namespace mapping from OpenVZ",
    "LOCAL_GID": "no user namespace mapping from OpenVZ",
}


def _yes(text: str) -> bool:
    return text.strip().lower() in ("yes", "y", "true", "1", "on")


def _addresses(text: str) -> list[str]:
    found = []
    for word in text.replace(",", " ").split():
        try:
            found.append(str(ipaddress.ip_interface(word).ip))
        except ValueError as exc:
            raise OpenVZConfigError(f"IP_ADDRESS: {word!r} is not an address") from exc
    return found


def read_settings(values: dict[str, str]) -> OpenVZSettings:
    """The mapped parameters of a parsed ve.conf; OpenVZConfigError when one is unreadable."""
    got = OpenVZSettings(raw=dict(values))
    got.hostname = values.get("HOSTNAME", "").strip().rstrip(".")
    got.addresses = _addresses(values.get("IP_ADDRESS", ""))
    if "PHYSPAGES" in values:
        got.memory_mib = _mib(barrier_limit(values["PHYSPAGES"], PAGE, "PHYSPAGES")[1])
    if "SWAPPAGES" in values:
        got.swap_mib = _mib(barrier_limit(values["SWAPPAGES"], PAGE, "SWAPPAGES")[1])
    if "CPUS" in values:
        got.vcpus = _count(values["CPUS"], "CPUS")
    if "CPULIMIT" in values:
        word = values["CPULIMIT"].strip().rstrip("%")
        if word.lower().endswith("m"):  # MHz: cannot be turned into a share of a CPU here
            raise OpenVZConfigError(f"CPULIMIT: {values['CPULIMIT']!r} in MHz is not supported")
        got.cpu_limit_percent = _count(word, "CPULIMIT")
    if "CPUUNITS" in values:
        got.cpu_units = _count(values["CPUUNITS"], "CPUUNITS")
    if "DISKSPACE" in values:
        barrier, limit = barrier_limit(values["DISKSPACE"], KIB, "DISKSPACE")
        got.disk_gib, got.disk_limit_gib = _gib(barrier), _gib(limit)
    if "NUMPROC" in values:
        got.max_processes = _count(values["NUMPROC"], "NUMPROC")
    got.nameservers = [
        str(ipaddress.ip_address(w)) for w in values.get("NAMESERVER", "").split() if _is_ip(w)
    ]
    if "ONBOOT" in values:
        got.onboot = _yes(values["ONBOOT"])
    got.ostemplate = values.get("OSTEMPLATE", "")
    return got


def _is_ip(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    parameter: str
    openvz: str  # the value in the ve.conf
    paddock: str  # what it became, or "not mapped"
    note: str = ""
    mapped: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NOT_MAPPED = "not mapped"


def _compare(theirs: int | None, ours: int, unit: str, what: str) -> tuple[str, str]:
    """(paddock text, note) for a limit the plan sets."""
    text = f"plan {what} {ours}{unit}"
    if theirs is None:
        return text, f"the container had no limit; it gets the plan's {ours}{unit}"
    if theirs == ours:
        return text, "the same"
    size = "smaller" if ours < theirs else "larger"
    return f"{text} ({size})", f"was {theirs}{unit}: the container gets the plan's"


def _limit_text(value: int | None, unit: str) -> str:
    return "unlimited" if value is None else f"{value}{unit}"


def import_report(got: OpenVZSettings, plan: Any, *, hostname: str = "") -> list[ReportLine]:
    """One line per ve.conf parameter: what it became on the new server under `plan`.

    The addresses' line is added by the import service once the server has them."""
    raw = got.raw
    lines: list[ReportLine] = []

    def add(name: str, paddock: str, note: str = "") -> None:
        lines.append(ReportLine(name, raw.get(name, ""), paddock, note))

    if "HOSTNAME" in raw or hostname:
        if hostname and hostname != got.hostname:
            add("HOSTNAME", hostname, "the hostname given for the import replaces it")
        else:
            add("HOSTNAME", got.hostname, "")
    if "PHYSPAGES" in raw:
        text, note = _compare(got.memory_mib, plan.memory_mib, " MiB", "memory")
        add("PHYSPAGES", f"{_limit_text(got.memory_mib, ' MiB')} -> {text}", note)
    if "SWAPPAGES" in raw:
        text, note = _compare(got.swap_mib, plan.swap_mib or 0, " MiB", "swap")
        add("SWAPPAGES", f"{_limit_text(got.swap_mib, ' MiB')} -> {text}", note)
    if "CPUS" in raw:
        text, note = _compare(got.vcpus, plan.vcpus, "", "vCPUs")
        add("CPUS", f"{_limit_text(got.vcpus, '')} -> {text}", note)
    if "CPULIMIT" in raw:
        quota = plan.vcpus * 100
        text, note = _compare(got.cpu_limit_percent, quota, "%", "CPU quota")
        add("CPULIMIT", f"{_limit_text(got.cpu_limit_percent, '%')} -> {text}",
            f"{note} (the quota is the plan's vCPUs, 100% each)")  # fmt: skip
    if "CPUUNITS" in raw:
        weight = min(10000, 100 * plan.vcpus)
        add("CPUUNITS", f"{_limit_text(got.cpu_units, '')} -> CPU weight {weight}",
            "the weight follows the plan's vCPUs (100 each), not OpenVZ's units")  # fmt: skip
    if "DISKSPACE" in raw:
        text, note = _compare(got.disk_gib, plan.disk_gib, " GiB", "disk")
        if got.disk_limit_gib is not None and got.disk_limit_gib != got.disk_gib:
            note += f"; the hard limit {got.disk_limit_gib} GiB is not kept (a fixed-size disk)"
        add("DISKSPACE", f"{_limit_text(got.disk_gib, ' GiB')} -> {text}", note)
    if "NUMPROC" in raw:
        ours = plan.max_processes or 0
        if ours:
            text, note = _compare(got.max_processes, ours, "", "process limit")
        else:
            text, note = "no process limit (the plan sets none)", ""
        add("NUMPROC", f"{_limit_text(got.max_processes, '')} -> {text}", note)
    if "NAMESERVER" in raw:
        add("NAMESERVER", ", ".join(got.nameservers) or "-",
            "the IP pool's name servers are written to /etc/resolv.conf when the pool has "
            "some; else the archive's resolv.conf stays")  # fmt: skip
    if "ONBOOT" in raw:
        add(
            "ONBOOT",
            "started when provisioned",
            "Paddock starts the server now; after a host restart its recorded state decides",
        )
    if "OSTEMPLATE" in raw:
        add("OSTEMPLATE", "informational", "the root file system is the archive's as it is")
    for name, value in raw.items():
        if name in MAPPED:
            continue
        reason = NOT_MAPPED_REASONS.get(name, "Paddock has no equivalent")
        lines.append(ReportLine(name, value, NOT_MAPPED, reason, mapped=False))
    return lines


def address_line(got: OpenVZSettings, assigned: list[str]) -> ReportLine:
    """IP_ADDRESS: which of the container's addresses the server kept."""
    theirs = got.raw.get("IP_ADDRESS", "")
    kept = [a for a in got.addresses if a in assigned]
    lost = [a for a in got.addresses if a not in assigned]
    if not got.addresses:
        note = "the container had no address: the server got one from the pool"
    elif not lost:
        note = "kept"
    else:
        note = (
            f"changed: {', '.join(lost)} not free in an IP pool of the host "
            "(one address per family is kept at most)"
        )
    if kept and lost:
        note = f"kept {', '.join(kept)}; " + note
    return ReportLine("IP_ADDRESS", theirs, ", ".join(assigned), note)


def not_mapped(lines: list[ReportLine]) -> list[str]:
    return [line.parameter for line in lines if not line.mapped]


def format_table(lines: list[ReportLine]) -> str:
    """The report as a plain-text table (the management command prints it)."""
    rows = [("parameter", "OpenVZ", "Paddock", "note")] + [
        (line.parameter, line.openvz, line.paddock, line.note) for line in lines
    ]
    widths = [min(40, max(len(r[i]) for r in rows)) for i in range(3)]
    out = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
