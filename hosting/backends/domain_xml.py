"""libvirt domain and volume XML, built from specs (no string pasting of user input)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DomainSpec:
    """A libvirt domain, in libvirt's terms (volumes in the host's pool). The libvirt
    backend makes it from the neutral GuestSpec."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    disk_volume: str
    mac_address: str
    network: str
    virt_type: str = "qemu"
    disk_format: str = "qcow2"
    memory_hard_limit: bool = False
    # a read-only second disk (vdb) holding the NoCloud seed, labelled cidata
    seed_volume: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


PADDOCK_NS = "https://paddock.invalid/xmlns/libvirt/1"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def domain_xml(spec: DomainSpec, *, pool: str, console_log_path: str = "") -> str:
    dom = ET.Element("domain", type=spec.virt_type)
    _sub(dom, "name", spec.name)
    _sub(dom, "uuid", spec.uuid)
    if spec.metadata:
        meta = _sub(dom, "metadata")
        ET.register_namespace("paddock", PADDOCK_NS)
        inst = ET.SubElement(meta, f"{{{PADDOCK_NS}}}server")
        for key, value in sorted(spec.metadata.items()):
            ET.SubElement(inst, f"{{{PADDOCK_NS}}}{key}").text = value
    # memory is a hard limit: current == maximum, no balloon growth past the plan
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mib), unit="MiB")
    if spec.memory_hard_limit:
        # caps the whole QEMU process (guest RAM plus overhead); needs CAP_SYS_RESOURCE
        memtune = _sub(dom, "memtune")
        _sub(memtune, "hard_limit", str(spec.memory_mib + 256), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus), placement="static")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64")
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="volume", device="disk")
    _sub(disk, "driver", name="qemu", type=spec.disk_format, cache="none")
    _sub(disk, "source", pool=pool, volume=spec.disk_volume)
    _sub(disk, "target", dev="vda", bus="virtio")
    if spec.seed_volume:
        seed = _sub(devices, "disk", type="volume", device="disk")
        _sub(seed, "driver", name="qemu", type="raw")
        _sub(seed, "source", pool=pool, volume=spec.seed_volume)
        _sub(seed, "target", dev="vdb", bus="virtio")
        _sub(seed, "readonly")
    iface = _sub(devices, "interface", type="network")
    _sub(iface, "source", network=spec.network)
    _sub(iface, "mac", address=spec.mac_address)
    _sub(iface, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    if console_log_path:
        _sub(serial, "log", file=console_log_path, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    return ET.tostring(dom, encoding="unicode")


def volume_xml(
    *,
    name: str,
    capacity_bytes: int,
    fmt: str = "qcow2",
    backing_path: str | None = None,
    backing_format: str = "qcow2",
) -> str:
    vol = ET.Element("volume")
    _sub(vol, "name", name)
    _sub(vol, "capacity", str(capacity_bytes), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=fmt)
    if fmt == "qcow2":
        # qcow2 v3: persistent dirty bitmaps (checkpoints for incremental backups) need it
        _sub(target, "compat", "1.1")
    if backing_path:
        backing = _sub(vol, "backingStore")
        _sub(backing, "path", backing_path)
        _sub(backing, "format", type=backing_format)
    return ET.tostring(vol, encoding="unicode")


def dir_pool_xml(*, name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", name)
    target = _sub(pool, "target")
    _sub(target, "path", path)
    return ET.tostring(pool, encoding="unicode")
