"""The hypervisors' pre-checks of a migration between two libvirt hosts: the guest's
networks and pools on the target, storage shared on both hosts or copied, the guest's CPU
against what the target offers, and QEMU and libvirt versions that can migrate."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import libvirt

from .libvirt_connections import translated
from .libvirt_volumes import (
    Disk,
    absent_as_none,
    backing_of,
    domain_disks,
    pool_or_none,
    pool_path,
    refresh,
)

if TYPE_CHECKING:
    from .libvirt_backend import LibvirtBackend

log = logging.getLogger(__name__)

# migrateToURI3 with typed parameters and compareHypervisorCPU: libvirt 4.4 on both ends
MIN_LIBVIRT = 4_004_000


def domain_networks(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    return [
        src.get("network", "")
        # a running guest's XML may show the network's actual type (bridge) instead
        for src in root.findall("devices/interface/source")
        if src.get("network")
    ]


def lookup_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    return absent_as_none(libvirt.VIR_ERR_NO_DOMAIN, conn.lookupByName, name)


def check(src: LibvirtBackend, name: str, dst: LibvirtBackend, *, live: bool) -> list[str]:
    """What would stop `name` moving from `src` to `dst` (hypervisor side)."""
    problems: list[str] = []
    with translated(f"check the migration of {name}", src.uri):
        dom = lookup_domain(src.conn, name)
        if dom is None:
            return problems  # the base check names it
        active = bool(dom.isActive())
        if live and not active:
            problems.append("The guest is not running: move it with an offline migration.")
        if not live and active:
            problems.append("The guest is running: stop it first, or migrate it live.")
        xml = dom.XMLDesc(0)
        disks = domain_disks(src.conn, xml)
        src_version, src_lib = src.conn.getVersion(), src.conn.getLibVersion()
    with translated(f"check the target for {name}", dst.uri):
        for network in domain_networks(xml):
            try:
                net = dst.conn.networkLookupByName(network)
            except libvirt.libvirtError:
                problems.append(f"The target has no network {network!r}.")
                continue
            if not net.isActive():
                problems.append(f"The target's network {network!r} is not active.")
        for pool_name in sorted({d.pool for d in disks}):
            problems += _pool_problems(src, dst, pool_name, disks)
        dst_version, dst_lib = dst.conn.getVersion(), dst.conn.getLibVersion()
        if min(src_lib, dst_lib) < MIN_LIBVIRT:
            problems.append(
                f"libvirt {_version(min(src_lib, dst_lib))} is too old to migrate "
                f"(at least {_version(MIN_LIBVIRT)} on both hosts)."
            )
        if live and dst_version < src_version:
            problems.append(
                f"The target's QEMU {_version(dst_version)} is older than the source's "
                f"{_version(src_version)}: QEMU migrates only to the same or a newer version."
            )
        if live and active:
            problems += _cpu_problems(dst, xml)
    return problems


def _pool_problems(
    src: LibvirtBackend, dst: LibvirtBackend, pool_name: str, disks: list[Disk]
) -> list[str]:
    pool = pool_or_none(dst.conn, pool_name)
    if pool is None:
        return [f"The target has no storage pool {pool_name!r}."]
    if not pool.isActive():
        return [f"The target's storage pool {pool_name!r} is not active."]
    refresh(pool)  # a shared pool: volumes that another host made there
    shared_here, shared_there = pool_name in src.shared_pools, pool_name in dst.shared_pools
    src_path = pool_path(src.conn.storagePoolLookupByName(pool_name))
    if shared_here != shared_there:
        return [
            f"Storage pool {pool_name!r} is declared shared on "
            f"{'the source' if shared_here else 'the target'} only."
        ]
    if shared_here and pool_path(pool) != src_path:
        return [f"The shared pool {pool_name!r} has another path on the target."]
    if not shared_here and pool_path(pool) != src_path:
        # a copied overlay names its backing image by path
        pool_ = src.conn.storagePoolLookupByName(pool_name)
        for disk in disks:
            if disk.pool == pool_name and backing_of(pool_.storageVolLookupByName(disk.volume)):
                return [
                    f"Storage pool {pool_name!r} is at another path on the target, and "
                    f"{disk.volume} is backed by an image named by its path."
                ]
    return []


def _cpu_problems(dst: LibvirtBackend, xml: str) -> list[str]:
    """libvirt's comparison of the guest's CPU with what the target's hypervisor offers."""
    root = ET.fromstring(xml)
    cpu = root.find("cpu")
    if cpu is None or cpu.find("model") is None:
        # no CPU model given: QEMU's default model for the guest's architecture
        cpu = ET.fromstring("<cpu mode='custom' match='exact'><model>qemu64</model></cpu>")
    cpu_xml = ET.tostring(cpu, encoding="unicode")
    os_type = root.find("os/type")
    arch = os_type.get("arch") if os_type is not None else None
    machine = os_type.get("machine") if os_type is not None else None
    virt_type = root.get("type") or None
    try:
        dst.conn.compareHypervisorCPU(
            None,
            arch,
            machine,
            virt_type,
            cpu_xml,
            libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE,
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            return [f"The guest's CPU is not compatible with the target: {exc.get_error_message()}"]
        log.info("CPU comparison on %s not possible: %s", dst.uri, exc.get_error_message())
    return []


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"
