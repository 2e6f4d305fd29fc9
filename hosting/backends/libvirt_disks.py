"""Snapshots, backups and disk restores of the libvirt backend (a mixin of LibvirtBackend).

Snapshots on QEMU hosts are **external**: taking snapshot K puts a new, empty qcow2
overlay `<guest>-disk0.snap-K.qcow2` on top of the disk, so the file below it keeps the
disk as it was at K (and `<guest>-snap-K.mem` the memory, when taken running). Internal
qcow2 snapshots are not used although the disks are qcow2: libvirt refuses them beside
checkpoints, and checkpoints (QEMU dirty bitmaps) are what incremental backups read.
- revert to K: the guest is forced off, every layer above K's overlay is deleted, K's
  overlay is made anew and empty on the frozen file; with memory the guest is restored
  from K's memory file and runs on;
- delete K: K's overlay is merged into the file below it (block commit, an active one
  with a pivot when it is the top) and removed; a stopped guest is started paused for
  the merge (its CPUs never run) and stopped again.
On libvirt's test driver (no disk files) snapshots are the driver's own internal ones.

Backups use libvirt's backup API in push mode: `backupBegin` writes the disk (or, with
`<incremental>`, only the blocks changed since a checkpoint) to a scratch qcow2 next to
the disk, with a new checkpoint taken at the same instant; the scratch file is streamed
from the host through a libvirt stream and removed. A stopped guest is started paused
for the copy. Filesystems are frozen through the guest agent when it answers.
"""

from __future__ import annotations

import logging
import os
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import libvirt

from .base import DiskBackup
from .domain_xml import volume_xml
from .errors import BackendError, CheckpointMissing, NotSupported, OperationTimeout
from .libvirt_connections import translated
from .libvirt_volumes import refresh
from .spec import ByteSink, Progress, no_progress

log = logging.getLogger(__name__)

DISK = "vda"
CHUNK = 4 * 1024 * 1024
POLL = 0.2
# the longest a block commit or a backup job may take before the step gives up
JOB_TIMEOUT = 3 * 3600


class LibvirtDisksMixin:
    """Needs `conn`, `uri`, `is_test_driver`, `_domain`, `_pool`, `_volume`, `_pool_path`,
    `disk_volume` and `put_volume`-style helpers of LibvirtBackend."""

    uri: str
    is_test_driver: bool

    # --- names ------------------------------------------------------------------------
    @staticmethod
    def snapshot_volume(name: str, key: str) -> str:
        return f"{name}-disk0.snap-{key}.qcow2"

    @staticmethod
    def memory_volume(name: str, key: str) -> str:
        return f"{name}-snap-{key}.mem"

    @staticmethod
    def scratch_volume(name: str, checkpoint: str) -> str:
        return f"{name}-backup-{checkpoint}.qcow2"

    @staticmethod
    def disk_files_prefixes(name: str) -> tuple[str, ...]:
        """The beginnings of every volume name above that belongs to guest `name`."""
        return (f"{name}-disk0.snap-", f"{name}-snap-", f"{name}-backup-")

    def _snapshot_name(self, name: str, key: str) -> str:
        return f"paddock-{key}"

    # --- the disk's chain -------------------------------------------------------------
    def _pool_and_dir(self):
        pool = self._pool(create=True)  # type: ignore[attr-defined]
        assert pool is not None
        refresh(pool)
        return pool, self._pool_path(pool)  # type: ignore[attr-defined]

    def _disk_element(self, root: ET.Element) -> ET.Element:
        for disk in root.findall("devices/disk"):
            target = disk.find("target")
            if target is not None and target.get("dev") == DISK:
                return disk
        raise BackendError(f"The guest has no disk {DISK}.")

    def _top_path(self, dom: libvirt.virDomain, pool) -> str:
        """The file the guest writes to (the top of its disk's chain)."""
        flags = 0 if dom.isActive() else libvirt.VIR_DOMAIN_XML_INACTIVE
        source = self._disk_element(ET.fromstring(dom.XMLDesc(flags))).find("source")
        if source is None:
            raise BackendError(f"The guest's disk {DISK} has no source.")
        if source.get("file"):
            return source.get("file", "")
        return pool.storageVolLookupByName(source.get("volume")).path()

    def _chain(self, dom: libvirt.virDomain) -> list[str]:
        """The disk's files from the top (the guest writes there) to the bottom."""
        pool, _ = self._pool_and_dir()
        chain = [self._top_path(dom, pool)]
        while True:
            try:
                vol = self.conn.storageVolLookupByPath(chain[-1])  # type: ignore[attr-defined]
            except libvirt.libvirtError:
                return chain
            backing = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")
            if not backing or backing in chain:
                return chain
            chain.append(backing)

    def _set_disk_file(self, dom: libvirt.virDomain, path: str) -> None:
        """Point the guest's persistent definition at `path` (as a file)."""
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        disk = self._disk_element(root)
        disk.set("type", "file")
        for child in list(disk):
            if child.tag in ("source", "backingStore"):
                disk.remove(child)
        disk.insert(1, ET.Element("source", file=path))  # after driver, as libvirt writes
        self.conn.defineXML(ET.tostring(root, encoding="unicode"))  # type: ignore[attr-defined]

    def _delete_volume(self, pool, volume: str) -> None:
        vol = self._volume(pool, volume)  # type: ignore[attr-defined]
        if vol is not None:
            vol.delete(0)

    def _delete_path(self, path: str) -> None:
        try:
            self.conn.storageVolLookupByPath(path).delete(0)  # type: ignore[attr-defined]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise

    def _other_disks(self, dom: libvirt.virDomain) -> list[str]:
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        names = []
        for disk in root.findall("devices/disk"):
            dev = disk.find("target")
            if dev is not None and dev.get("dev") != DISK:
                names.append(dev.get("dev", ""))
        return names

    def _start_paused(self, dom: libvirt.virDomain) -> bool:
        """Start a stopped guest with its CPUs stopped (for a block job); True if it was
        started here (and must be stopped again)."""
        if dom.isActive():
            return False
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        return True

    # --- snapshots --------------------------------------------------------------------
    def snapshot_keys(self, name: str) -> list[str]:
        with translated(f"list snapshots of {name}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            if self.is_test_driver:
                return [
                    s.getName().removeprefix("paddock-")
                    for s in dom.listAllSnapshots(0)
                    if s.getName().startswith("paddock-")
                ]
            prefix = f"{name}-disk0.snap-"
            keys = [
                path.rsplit("/", 1)[-1].removeprefix(prefix).removesuffix(".qcow2")
                for path in self._chain(dom)
                if path.rsplit("/", 1)[-1].startswith(prefix)
            ]
            return list(reversed(keys))

    def create_snapshot(
        self, name: str, key: str, *, description: str = "", with_memory: bool = False
    ) -> None:
        with translated(f"take snapshot {key} of {name}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            if key in self.snapshot_keys(name):
                return
            desc = f"<description>{escape(description)}</description>"
            if self.is_test_driver:
                xml = (
                    f"<domainsnapshot><name>{self._snapshot_name(name, key)}</name>"
                    f"{desc}</domainsnapshot>"
                )
                dom.snapshotCreateXML(xml, 0)
                return
            pool, directory = self._pool_and_dir()
            overlay = f"{directory}/{self.snapshot_volume(name, key)}"
            self._delete_path(overlay)  # a half-made one from a failed attempt
            others = "".join(
                f"<disk name={quoteattr(dev)} snapshot='no'/>" for dev in self._other_disks(dom)
            )
            disks = (
                f"<disks><disk name='{DISK}' snapshot='external' type='file'>"
                f"<driver type='qcow2'/><source file={quoteattr(overlay)}/></disk>"
                f"{others}</disks>"
            )
            flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            memory = ""
            if with_memory and dom.isActive():
                memfile = f"{directory}/{self.memory_volume(name, key)}"
                self._delete_path(memfile)
                memory = f"<memory snapshot='external' file={quoteattr(memfile)}/>"
                flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
            else:
                flags |= (
                    libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                )
            xml = (
                f"<domainsnapshot><name>{self._snapshot_name(name, key)}</name>{desc}"
                f"{memory}{disks}</domainsnapshot>"
            )
            dom.snapshotCreateXML(xml, flags)
            if dom.isActive():
                # the running guest moved to the overlay; its next boot must too
                self._set_disk_file(dom, overlay)
            refresh(pool)

    def revert_snapshot(self, name: str, key: str, *, with_memory: bool = False) -> None:
        with translated(f"revert {name} to snapshot {key}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            if self.is_test_driver:
                snap = dom.snapshotLookupByName(self._snapshot_name(name, key))
                dom.revertToSnapshot(snap, 0)
                for later in snap.listAllChildren(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS):
                    later.delete(0)
                # the driver restores the state it recorded; Paddock's rule is the same
                # on every host: running from memory, otherwise off
                if with_memory and not dom.isActive():
                    dom.create()
                elif not with_memory and dom.isActive():
                    dom.destroy()
                return
            if dom.isActive():
                dom.destroy()
            pool, directory = self._pool_and_dir()
            chain = self._chain(dom)
            overlay = f"{directory}/{self.snapshot_volume(name, key)}"
            if overlay not in chain:
                raise BackendError(f"Snapshot {key} is not in the disk's chain.")
            at = chain.index(overlay)
            frozen = chain[at + 1]
            for path in chain[: at + 1]:  # later snapshots' overlays, the top, K's overlay
                later_key = path.rsplit("/", 1)[-1]
                self._delete_path(path)
                if later_key.startswith(f"{name}-disk0.snap-"):
                    other = later_key.removeprefix(f"{name}-disk0.snap-").removesuffix(".qcow2")
                    if other != key:
                        self._delete_volume(pool, self.memory_volume(name, other))
            capacity = self.conn.storageVolLookupByPath(frozen).info()[1]  # type: ignore[attr-defined]
            pool.createXML(
                volume_xml(
                    name=self.snapshot_volume(name, key),
                    capacity_bytes=capacity,
                    backing_path=frozen,
                    backing_format="qcow2",
                ),
                0,
            )
            self._set_disk_file(dom, overlay)
            memfile = self._volume(pool, self.memory_volume(name, key))  # type: ignore[attr-defined]
            if with_memory and memfile is not None:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
                self.conn.restoreFlags(memfile.path(), xml, libvirt.VIR_DOMAIN_SAVE_RUNNING)  # type: ignore[attr-defined]

    def delete_snapshot(self, name: str, key: str) -> None:
        with translated(f"delete snapshot {key} of {name}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            if self.is_test_driver:
                if key in self.snapshot_keys(name):
                    dom.snapshotLookupByName(self._snapshot_name(name, key)).delete(0)
                return
            pool, directory = self._pool_and_dir()
            chain = self._chain(dom)
            overlay = f"{directory}/{self.snapshot_volume(name, key)}"
            if overlay in chain:
                self._commit(dom, chain, overlay)
            else:
                self._delete_path(overlay)  # left by a failed attempt, not in use
            self._delete_volume(pool, self.memory_volume(name, key))
            refresh(pool)

    def _commit(self, dom: libvirt.virDomain, chain: list[str], overlay: str) -> None:
        """Merge `overlay` into the file below it and remove it from the chain."""
        at = chain.index(overlay)
        base = chain[at + 1]
        started = self._start_paused(dom)
        try:
            flags = 0
            if at == 0:
                flags |= libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
            dom.blockCommit(DISK, base, overlay, 0, flags)
            self._wait_block_job(dom, pivot=at == 0)
        finally:
            if started:
                dom.destroy()
        if at == 0:
            self._set_disk_file(dom, base)
        self._delete_path(overlay)

    def _wait_block_job(self, dom: libvirt.virDomain, *, pivot: bool) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            info = dom.blockJobInfo(DISK, 0)
            if not info:
                return  # a plain commit ended (libvirt removed the job)
            if pivot and info.get("end", 0) and info["cur"] == info["end"]:
                try:
                    dom.blockJobAbort(DISK, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                except libvirt.libvirtError as exc:
                    if "not ready" not in (exc.get_error_message() or ""):
                        raise
                    time.sleep(POLL)
                    continue
                # the pivot completes asynchronously; wait for the job to go
                while dom.blockJobInfo(DISK, 0):
                    time.sleep(POLL)
                return
            time.sleep(POLL)
        raise OperationTimeout(f"The block job on {DISK} did not end in {JOB_TIMEOUT} s.")

    # --- backups ----------------------------------------------------------------------
    def forget_checkpoints(self, name: str) -> None:
        with translated(f"drop the checkpoints of {name}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            for ck in dom.listAllCheckpoints(0):
                try:
                    ck.delete(0)
                except libvirt.libvirtError:
                    ck.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)

    def _freeze(self, dom: libvirt.virDomain) -> bool:
        """Freeze the guest's filesystems through its agent; False when it does not answer."""
        try:
            dom.fsFreeze(None, 0)
        except libvirt.libvirtError as exc:
            log.info("no filesystem freeze: %s", exc.get_error_message())
            return False
        return True

    def backup_disk(
        self,
        name: str,
        *,
        checkpoint: str,
        since: str | None,
        sink: ByteSink,
        progress: Progress | None = None,
    ) -> DiskBackup:
        if self.is_test_driver:
            raise NotSupported("libvirt's test driver has no backup API.")
        report = progress or no_progress
        with translated(f"back up {name}", self.uri):
            dom = self._domain(name)  # type: ignore[attr-defined]
            if since is not None:
                names = {ck.getName() for ck in dom.listAllCheckpoints(0)}
                if since not in names:
                    raise CheckpointMissing(
                        f"Checkpoint {since} is gone from the host: a full backup is needed."
                    )
            pool, directory = self._pool_and_dir()
            scratch_name = self.scratch_volume(name, checkpoint)
            scratch = f"{directory}/{scratch_name}"
            self._delete_path(scratch)
            # a retry after the checkpoint was taken: take it again
            for ck in dom.listAllCheckpoints(0):
                if ck.getName() == checkpoint:
                    ck.delete(0)
            others = self._other_disks(dom)
            incremental = f"<incremental>{escape(since)}</incremental>" if since else ""
            backup_xml = (
                f"<domainbackup mode='push'>{incremental}<disks>"
                f"<disk name='{DISK}' backup='yes' type='file'>"
                f"<driver type='qcow2'/><target file={quoteattr(scratch)}/></disk>"
                + "".join(f"<disk name={quoteattr(d)} backup='no'/>" for d in others)
                + "</disks></domainbackup>"
            )
            checkpoint_xml = (
                f"<domaincheckpoint><name>{escape(checkpoint)}</name><disks>"
                f"<disk name='{DISK}' checkpoint='bitmap'/>"
                + "".join(f"<disk name={quoteattr(d)} checkpoint='no'/>" for d in others)
                + "</disks></domaincheckpoint>"
            )
            started = self._start_paused(dom)
            try:
                frozen = False if started else self._freeze(dom)
                try:
                    try:
                        dom.backupBegin(backup_xml, checkpoint_xml, 0)
                    except libvirt.libvirtError as exc:
                        if since or "qcow2 v2" not in (exc.get_error_message() or ""):
                            raise
                        # an old qcow2 v2 disk cannot hold a checkpoint: a full backup
                        # without one (every backup of this disk will be a full one)
                        log.info("%s: qcow2 v2 disk, backing up without a checkpoint", name)
                        dom.backupBegin(backup_xml, None, 0)
                        checkpoint = ""
                finally:
                    if frozen:
                        dom.fsThaw(None, 0)
                report(5, "Copying the disk on the host")
                self._wait_backup(dom, report)
            finally:
                if started:
                    dom.destroy()
            virtual = dom.blockInfo(DISK, 0)[0] if dom.isActive() else 0
            refresh(pool)
            vol = pool.storageVolLookupByName(scratch_name)
            if not virtual:
                virtual = vol.info()[1]
            try:
                streamed = self._download(vol, sink, report)
            finally:
                vol.delete(0)
        return DiskBackup(
            disk=DISK,
            format="qcow2",
            virtual_bytes=virtual,
            streamed_bytes=streamed,
            consistency="frozen" if frozen else "crash-consistent",
            checkpoint=checkpoint,
            since=since,
        )

    def _wait_backup(self, dom: libvirt.virDomain, report: Progress) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            stats = dom.jobStats(0)
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            total, done = stats.get("disk_total", 0), stats.get("disk_processed", 0)
            if total:
                report(5 + int(45 * done / total), f"Copying on the host: {done} of {total} bytes")
            time.sleep(POLL)
        else:
            dom.abortJob()
            raise OperationTimeout(f"The backup did not end in {JOB_TIMEOUT} s.")
        done = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if done.get("type") == libvirt.VIR_DOMAIN_JOB_FAILED:
            raise BackendError(f"The backup job failed: {done.get('errmsg', 'no reason given')}")

    def _download(self, vol: libvirt.virStorageVol, sink: ByteSink, report: Progress) -> int:
        size = vol.info()[2] or vol.info()[1]  # allocation: a qcow2 file's real size
        stream = self.conn.newStream(0)  # type: ignore[attr-defined]
        vol.download(stream, 0, 0, 0)
        received = 0
        last = 0.0
        while True:
            chunk = stream.recv(CHUNK)
            if chunk in (-2, None) or not isinstance(chunk, bytes | bytearray):
                raise BackendError("The download from the host stalled.")
            if not chunk:
                break
            sink(bytes(chunk))
            received += len(chunk)
            now = time.monotonic()
            if now - last > 1:
                last = now
                share = min(1.0, received / size) if size else 0
                report(50 + int(45 * share), f"Streaming: {received} of about {size} bytes")
        stream.finish()
        return received

    def replace_disk(self, name: str, *, source_path: str) -> None:
        with translated(f"restore the disk of {name}", self.uri):
            pool, directory = self._pool_and_dir()
            disk_name = self.disk_volume(name)  # type: ignore[attr-defined]
            try:
                dom = self._domain(name)  # type: ignore[attr-defined]
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                dom = None
            if dom is not None:
                if dom.isActive():
                    raise BackendError(f"{name} must be off for its disk to be replaced.")
                if self.is_test_driver:
                    for snap in dom.listAllSnapshots(0):
                        snap.delete(0)
                    return
                self.forget_checkpoints(name)
                chain = self._chain(dom)
                disk_path = f"{directory}/{disk_name}"
                for path in chain[: chain.index(disk_path)] if disk_path in chain else chain[:1]:
                    self._delete_path(path)
                for vol_name in pool.listVolumes():
                    if vol_name.startswith(self.disk_files_prefixes(name)):
                        self._delete_volume(pool, vol_name)
            self._delete_volume(pool, disk_name)
            if self.is_test_driver:
                pool.createXML(volume_xml(name=disk_name, capacity_bytes=1024**3), 0)
                return
            size = os.path.getsize(source_path)
            vol = pool.createXML(volume_xml(name=disk_name, capacity_bytes=size, fmt="raw"), 0)
            self._upload(vol, source_path)  # type: ignore[attr-defined]
            refresh(pool)
            if dom is not None:
                self._set_disk_volume(dom, pool, disk_name)

    def _set_disk_volume(self, dom: libvirt.virDomain, pool, volume: str) -> None:
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        disk = self._disk_element(root)
        disk.set("type", "volume")
        source = disk.find("source")
        if source is None:
            source = ET.SubElement(disk, "source")
        for attr in list(source.attrib):
            del source.attrib[attr]
        for child in list(disk):
            if child.tag == "backingStore":
                disk.remove(child)
        source.set("pool", pool.name())
        source.set("volume", volume)
        self.conn.defineXML(ET.tostring(root, encoding="unicode"))  # type: ignore[attr-defined]
