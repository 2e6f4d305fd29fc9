"""Volumes of a guest between two libvirt hosts: which disks a guest has and where, which
must be copied (not on a pool both hosts declare shared), and copying them: streamed
through the two libvirtd connections (`virStorageVol` download into upload), or made
empty on the target for QEMU to fill during a live migration. What was made on the
target for a move is removed again if it fails."""

from __future__ import annotations

import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import libvirt

from .domain_xml import volume_xml
from .errors import BackendError

if TYPE_CHECKING:
    from .libvirt_backend import LibvirtBackend

log = logging.getLogger(__name__)

CHUNK = 1 << 20
T = TypeVar("T")
# libvirt refuses to refresh a pool while one of its volumes is being built or filled
# (another migration's, an evacuation runs several): wait for it, this long at most
REFRESH_WAIT = 60.0
BUSY_POOL = "has asynchronous jobs running"


@dataclass(frozen=True)
class Disk:
    dev: str
    pool: str
    volume: str
    path: str
    readonly: bool


def domain_disks(conn: libvirt.virConnect, xml: str) -> list[Disk]:
    """The guest's disks that live in a storage pool (by volume, or by a path in one)."""
    disks = []
    for disk in ET.fromstring(xml).findall("devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        if source is None or target is None:
            continue
        readonly = disk.find("readonly") is not None
        if disk.get("type") == "volume":
            pool = conn.storagePoolLookupByName(source.get("pool", ""))
            vol = pool.storageVolLookupByName(source.get("volume", ""))
        elif disk.get("type") == "file" and source.get("file"):
            vol = conn.storageVolLookupByPath(source.get("file"))
            pool = vol.storagePoolLookupByVolume()
        else:
            continue
        disks.append(
            Disk(
                dev=target.get("dev", ""),
                pool=pool.name(),
                volume=vol.name(),
                path=vol.path(),
                readonly=readonly,
            )
        )
    return disks


def refresh(
    pool: libvirt.virStoragePool, *, wait: float = REFRESH_WAIT, stale_ok: bool = False
) -> None:
    """`pool.refresh`, again after a pause while libvirt says the pool is busy building
    or filling a volume (up to `wait` seconds). Still busy then: raises, or with
    `stale_ok` returns, leaving the volumes as libvirt last read them."""
    deadline = time.monotonic() + wait
    pause = 0.1
    while True:
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as exc:
            if BUSY_POOL not in str(exc):
                raise
            if time.monotonic() + pause > deadline:
                if stale_ok:
                    return
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def pool_path(pool: libvirt.virStoragePool) -> str:
    return ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""


def backing_of(vol: libvirt.virStorageVol) -> tuple[str, str] | None:
    """(path, format) of a volume's backing image, if it has one."""
    backing = ET.fromstring(vol.XMLDesc(0)).find("backingStore")
    if backing is None or not backing.findtext("path"):
        return None
    fmt = backing.find("format")
    return backing.findtext("path") or "", fmt.get("type", "qcow2") if fmt is not None else "qcow2"


def volume_format(vol: libvirt.virStorageVol) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return fmt.get("type", "raw") if fmt is not None else "raw"


def absent_as_none(code: int, lookup: Callable[..., T], *args: Any) -> T | None:
    """`lookup(*args)`, or None when libvirt answers that it does not exist (`code`)."""
    try:
        return lookup(*args)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == code:
            return None
        raise


def pool_or_none(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    return absent_as_none(libvirt.VIR_ERR_NO_STORAGE_POOL, conn.storagePoolLookupByName, name)


def volume_or_none(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    return absent_as_none(libvirt.VIR_ERR_NO_STORAGE_VOL, pool.storageVolLookupByName, name)


def volume_by_path(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    return absent_as_none(libvirt.VIR_ERR_NO_STORAGE_VOL, conn.storageVolLookupByPath, path)


def stream_volume(
    src_conn: libvirt.virConnect,
    src_vol: libvirt.virStorageVol,
    dst_conn: libvirt.virConnect,
    dst_vol: libvirt.virStorageVol,
) -> int:
    """Copy a volume's bytes from one host to the other; the number of bytes."""
    down = src_conn.newStream(0)
    up = dst_conn.newStream(0)
    src_vol.download(down, 0, 0, 0)
    dst_vol.upload(up, 0, 0, 0)
    total = 0
    try:
        while True:
            chunk = down.recv(CHUNK)
            if isinstance(chunk, int):  # -2: would block (not on a blocking stream)
                continue
            if not chunk:
                break
            sent = 0
            while sent < len(chunk):
                sent += up.send(chunk[sent:])
            total += len(chunk)
        down.finish()
        up.finish()
    except BaseException:
        for stream in (down, up):
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        raise
    return total


class TargetVolumes:
    """Volumes made on the target for one migration: removed again if it fails."""

    def __init__(self, src: LibvirtBackend, dst: LibvirtBackend):
        self.src, self.dst = src, dst
        self.created: list[libvirt.virStorageVol] = []
        self.bytes = 0

    def _create(self, pool: libvirt.virStoragePool, xml: str) -> libvirt.virStorageVol:
        vol = pool.createXML(xml, 0)
        self.created.append(vol)
        return vol

    def _target_pool(self, name: str) -> libvirt.virStoragePool:
        pool = pool_or_none(self.dst.conn, name)
        if pool is None:
            raise BackendError(f"The target has no storage pool {name!r}.")
        refresh(pool)
        return pool

    def copy(self, pool_name: str, volume: str, *, missing_ok: bool = False) -> None:
        """Stream the volume's bytes into a new volume of the same name on the target
        (its backing image first, when the target lacks it)."""
        src_pool = self.src.conn.storagePoolLookupByName(pool_name)
        refresh(src_pool)
        src_vol = volume_or_none(src_pool, volume)
        if src_vol is None:
            if missing_ok:
                return
            raise BackendError(f"Volume {volume} is missing from pool {pool_name} on the source.")
        self.ensure_backing(src_vol)
        dst_pool = self._target_pool(pool_name)
        old = volume_or_none(dst_pool, volume)
        if old is not None:
            old.delete(0)  # a leftover of an earlier, failed attempt
        dst_vol = self._create(dst_pool, volume_xml(name=volume, capacity_bytes=0, fmt="raw"))
        self.bytes += stream_volume(self.src.conn, src_vol, self.dst.conn, dst_vol)
        refresh(dst_pool)  # libvirt reads the format (and backing) of what arrived

    def precreate(self, pool_name: str, volume: str) -> None:
        """An empty volume like the source's (format, size, backing) for QEMU to copy the
        guest's writes into during a live migration."""
        src_vol = self.src.conn.storagePoolLookupByName(pool_name).storageVolLookupByName(volume)
        backing = self.ensure_backing(src_vol)
        dst_pool = self._target_pool(pool_name)
        old = volume_or_none(dst_pool, volume)
        if old is not None:
            old.delete(0)
        xml = volume_xml(
            name=volume,
            capacity_bytes=src_vol.info()[1],
            fmt=volume_format(src_vol),
            backing_path=backing[0] if backing else None,
            backing_format=backing[1] if backing else "qcow2",
        )
        self._create(dst_pool, xml)

    def ensure_backing(self, src_vol: libvirt.virStorageVol) -> tuple[str, str] | None:
        """Make the volume's backing image (an image's base volume) exist on the target
        at the same path. Kept there afterwards, like any image the host has used."""
        backing = backing_of(src_vol)
        if backing is None:
            return None
        path, _fmt = backing
        if volume_by_path(self.dst.conn, path) is not None:
            return backing
        base = self.src.conn.storageVolLookupByPath(path)
        self.ensure_backing(base)
        dst_pool = self._target_pool(base.storagePoolLookupByVolume().name())
        dst_vol = dst_pool.createXML(volume_xml(name=base.name(), capacity_bytes=0, fmt="raw"), 0)
        try:
            self.bytes += stream_volume(self.src.conn, base, self.dst.conn, dst_vol)
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                dst_vol.delete(0)
            raise
        refresh(dst_pool)
        return backing

    def remove(self) -> None:
        for vol in reversed(self.created):
            try:
                vol.delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    log.warning("could not remove %s from the target: %s", vol.name(), exc)
        self.created.clear()


def remove_volumes(src: LibvirtBackend, volumes: list[tuple[str, str]]) -> None:
    """After a move: the source's copies of what now lives on the target."""
    for pool_name, volume in volumes:
        try:
            pool = src.conn.storagePoolLookupByName(pool_name)
            refresh(pool)
            vol = volume_or_none(pool, volume)
            if vol is not None:
                vol.delete(0)
        except libvirt.libvirtError as exc:
            log.warning("could not remove %s/%s from %s: %s", pool_name, volume, src.uri, exc)


def refresh_shared(dst: LibvirtBackend, disks: list[Disk]) -> None:
    """The target's libvirtd learns the volumes another host made in a shared pool."""
    for pool_name in sorted({d.pool for d in disks if d.pool in dst.shared_pools}):
        pool = pool_or_none(dst.conn, pool_name)
        if pool is not None and pool.isActive():
            refresh(pool)


def to_copy(src: LibvirtBackend, dst: LibvirtBackend, disks: list[Disk]) -> list[Disk]:
    return [d for d in disks if not (d.pool in src.shared_pools and d.pool in dst.shared_pools)]


def console_volume(src: LibvirtBackend, name: str, xml: str) -> tuple[str, str]:
    """(pool, volume) of the guest's serial console log: where its XML says, else where
    the backend puts it."""
    log_file = ET.fromstring(xml).find("devices/serial/log")
    if log_file is not None and log_file.get("file"):
        directory, _, volume = log_file.get("file", "").rpartition("/")
        for pool_name in src.conn.listStoragePools():
            if pool_path(src.conn.storagePoolLookupByName(pool_name)) == directory:
                return pool_name, volume
    return src.pool_name, src.console_log_volume(name)


def console_if_copied(src: LibvirtBackend, dst: LibvirtBackend, pool: str, vol: str) -> list:
    return [] if pool in src.shared_pools and pool in dst.shared_pools else [(pool, vol)]
