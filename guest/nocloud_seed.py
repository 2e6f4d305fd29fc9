"""NoCloud seed for the Paddock tiny guest: the three documents and the ISO 9660 volume.

Standard library only, so Paddock can import it (or copy it) without genisoimage/xorriso
on the host. The ISO written here is what `genisoimage -V cidata -J -r` would produce for
the purpose: an ISO 9660 volume labelled ``cidata`` with a Joliet directory, holding
``meta-data``, ``user-data`` and ``network-config`` in its root. Linux (the tiny guest, and
cloud-init on real distributions) reads the Joliet names; without Joliet it reads the
primary names (``META-DATA.;1``, lower-cased by the kernel's default ``map=normal``).

Command line (used by guest/smoke-test.sh)::

    python3 guest/nocloud_seed.py seed.iso --hostname web-1 --instance-id srv-42 \\
        --mac 52:54:00:12:34:56 --address 192.0.2.10/24 --gateway 192.0.2.1 \\
        --nameserver 192.0.2.1 --ssh-key "ssh-ed25519 AAAA... user@host"
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

SECTOR = 2048


# --- the documents ----------------------------------------------------------------------------


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def render_meta_data(instance_id: str, hostname: str) -> str:
    return f"instance-id: {_q(instance_id)}\nlocal-hostname: {_q(hostname)}\n"


def render_user_data(ssh_keys: Iterable[str] = ()) -> str:
    ssh_keys = [key for key in ssh_keys if key.strip()]
    lines = ["#cloud-config", "ssh_authorized_keys:" if ssh_keys else "ssh_authorized_keys: []"]
    lines += [f"  - {_q(key.strip())}" for key in ssh_keys]
    return "\n".join(lines) + "\n"


def render_network_config(
    mac: str,
    address: str,
    gateway: str | None = None,
    nameservers: Sequence[str] = (),
    interface: str = "eth0",
) -> str:
    """Netplan v2, the one shape the guest reads: one ethernet matched by MAC, one static
    IPv4 address in CIDR form, an optional default gateway and name servers."""
    if "/" not in address:
        raise ValueError(f"address must be in CIDR form (192.0.2.10/24), got {address!r}")
    lines = [
        "version: 2",
        "ethernets:",
        f"  {interface}:",
        "    match:",
        f"      macaddress: {_q(mac.lower())}",
        f"    set-name: {interface}",
        f"    addresses: [{_q(address)}]",
    ]
    if gateway:
        lines.append(f"    gateway4: {_q(gateway)}")
    if nameservers:
        lines.append("    nameservers:")
        lines.append(f"      addresses: [{', '.join(_q(n) for n in nameservers)}]")
    return "\n".join(lines) + "\n"


# --- ISO 9660 + Joliet ---------------------------------------------------------------------------


def _both16(n: int) -> bytes:
    return struct.pack("<H", n) + struct.pack(">H", n)


def _both32(n: int) -> bytes:
    return struct.pack("<I", n) + struct.pack(">I", n)


def _pad(text: bytes, size: int, fill: bytes = b" ") -> bytes:
    if len(text) > size:
        raise ValueError(f"{text!r} longer than {size} bytes")
    text += fill * ((size - len(text)) // len(fill))
    return text + b"\x00" * (size - len(text))


def _ucs2(text: str, size: int) -> bytes:
    return _pad(text.encode("utf-16-be"), size, b"\x00 ")


def _dir_time(t: _dt.datetime) -> bytes:
    return bytes([t.year - 1900, t.month, t.day, t.hour, t.minute, t.second, 0])


def _vd_time(t: _dt.datetime) -> bytes:
    return t.strftime("%Y%m%d%H%M%S00").encode() + b"\x00"


def _record(ident: bytes, extent: int, size: int, is_dir: bool, t: _dt.datetime) -> bytes:
    length = 33 + len(ident) + (1 - len(ident) % 2)
    rec = (
        bytes([length, 0])
        + _both32(extent)
        + _both32(size)
        + _dir_time(t)
        + bytes([2 if is_dir else 0, 0, 0])
        + _both16(1)
        + bytes([len(ident)])
        + ident
    )
    return _pad(rec, length, b"\x00")


def _primary_name(name: str) -> bytes:
    base = name.upper().replace(" ", "_")
    if "." not in base:
        base += "."
    return (base + ";1").encode("ascii")


def _joliet_name(name: str) -> bytes:
    return (name + ";1").encode("utf-16-be")


def _directory(entries: list[tuple[bytes, int, int]], self_extent: int, t) -> bytes:
    data = _record(b"\x00", self_extent, SECTOR, True, t) + _record(
        b"\x01", self_extent, SECTOR, True, t
    )
    for ident, extent, size in sorted(entries):
        data += _record(ident, extent, size, False, t)
    if len(data) > SECTOR:
        raise ValueError("too many files for a one-sector root directory")
    return _pad(data, SECTOR, b"\x00")


def _path_table(root_extent: int, big_endian: bool) -> bytes:
    fmt = ">IH" if big_endian else "<IH"
    return bytes([1, 0]) + struct.pack(fmt, root_extent, 1) + b"\x00\x00"


def _volume_descriptor(
    kind: int,
    label: str,
    total: int,
    root: bytes,
    path_l: int,
    path_m: int,
    path_size: int,
    t: _dt.datetime,
) -> bytes:
    joliet = kind == 2

    def text(value: str, size: int) -> bytes:
        return _ucs2(value, size) if joliet else _pad(value.encode("ascii"), size)

    vd = (
        bytes([kind])
        + b"CD001\x01\x00"
        + text("LINUX", 32)
        + text(label, 32)
        + bytes(8)
        + _both32(total)
        + _pad(b"%/E" if joliet else b"", 32, b"\x00")
        + _both16(1)
        + _both16(1)
        + _both16(SECTOR)
        + _both32(path_size)
        + struct.pack("<I", path_l)
        + bytes(4)
        + struct.pack(">I", path_m)
        + bytes(4)
        + root
        + text("", 128)  # volume set
        + text("", 128)  # publisher
        + text("", 128)  # data preparer
        + text("PADDOCK NOCLOUD SEED", 128)  # application
        + text("", 37)
        + text("", 37)
        + text("", 37)
        + _vd_time(t)
        + _vd_time(t)
        + b"0" * 16
        + b"\x00"
        + _vd_time(t)
        + b"\x01\x00"
    )
    return _pad(vd, SECTOR, b"\x00")


def build_iso(files: dict[str, bytes], label: str = "cidata", when=None) -> bytes:
    """An ISO 9660 image (with Joliet) holding ``files`` in its root directory."""
    t = (when or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
    # sectors: 16 PVD, 17 Joliet SVD, 18 terminator, 19-22 path tables, 23-24 root dirs
    pvd_root, svd_root, first_file = 23, 24, 25
    extents: dict[str, int] = {}
    sector = first_file
    for name in sorted(files):
        extents[name] = sector
        sector += max(1, -(-len(files[name]) // SECTOR))
    total = sector

    primary = _directory(
        [(_primary_name(n), extents[n], len(files[n])) for n in files], pvd_root, t
    )
    joliet = _directory([(_joliet_name(n), extents[n], len(files[n])) for n in files], svd_root, t)
    path_size = len(_path_table(pvd_root, False))

    out = bytearray(SECTOR * 16)
    out += _volume_descriptor(
        1, label, total, _record(b"\x00", pvd_root, SECTOR, True, t), 19, 20, path_size, t
    )
    out += _volume_descriptor(
        2, label, total, _record(b"\x00", svd_root, SECTOR, True, t), 21, 22, path_size, t
    )
    out += _pad(b"\xffCD001\x01", SECTOR, b"\x00")
    for extent, big in ((pvd_root, False), (pvd_root, True), (svd_root, False), (svd_root, True)):
        out += _pad(_path_table(extent, big), SECTOR, b"\x00")
    out += primary + joliet
    for name in sorted(files):
        data = files[name]
        out += data + bytes(max(1, -(-len(data) // SECTOR)) * SECTOR - len(data))
    assert len(out) == total * SECTOR, (len(out), total)
    return bytes(out)


def build_seed_iso(meta_data: str, user_data: str, network_config: str | None = None) -> bytes:
    files = {"meta-data": meta_data.encode(), "user-data": user_data.encode()}
    if network_config is not None:
        files["network-config"] = network_config.encode()
    return build_iso(files, label="cidata")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a NoCloud seed ISO for the tiny guest.")
    ap.add_argument("output", type=Path)
    ap.add_argument("--hostname", required=True)
    ap.add_argument("--instance-id")
    ap.add_argument("--mac", required=True)
    ap.add_argument("--address", required=True, help="CIDR, e.g. 192.0.2.10/24")
    ap.add_argument("--gateway")
    ap.add_argument("--nameserver", action="append", default=[])
    ap.add_argument("--ssh-key", action="append", default=[])
    ap.add_argument("--dir", type=Path, help="also write the three documents here")
    args = ap.parse_args(argv)
    docs = {
        "meta-data": render_meta_data(args.instance_id or args.hostname, args.hostname),
        "user-data": render_user_data(args.ssh_key),
        "network-config": render_network_config(
            args.mac, args.address, args.gateway, args.nameserver
        ),
    }
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (args.dir / name).write_text(text)
    args.output.write_bytes(
        build_seed_iso(docs["meta-data"], docs["user-data"], docs["network-config"])
    )


if __name__ == "__main__":
    main()
