"""The libvirt backend: KVM/QEMU hosts (`qemu:///system`, `qemu+ssh://`, `qemu+tls://`,
`qemu+tcp://`) and libvirt's in-process `test:///default` driver.

With libvirt_connections, libvirt_stats, libvirt_disks and domain_xml, the only code that imports
libvirt. A GuestSpec becomes a domain with volumes in the host's storage pool: the
image's base volume (uploaded once), the guest's disk `<name>-disk0.qcow2` (a qcow2
overlay of the base or a full copy), the seed `<name>-seed.iso` (a NoCloud ISO on a
read-only vdb) and the serial console log `<name>.console.log`.
"""

from __future__ import annotations

import logging
import os
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import libvirt

from ..choices import BackendKind
from . import libvirt_migration, libvirt_migration_checks
from .base import Backend, HostInfo
from .capabilities import Capability
from .domain_xml import DomainSpec, dir_pool_xml, domain_xml, volume_xml
from .errors import BackendError, ImageNotAvailable, NotSupported
from .libvirt_connections import DEFAULT_CONNECT_TIMEOUT, connect, translated
from .libvirt_disks import LibvirtDisksMixin
from .libvirt_migration import migration_host
from .libvirt_stats import STATE_MAP, STATS_GROUPS, guest_stats
from .libvirt_volumes import refresh
from .migration import CancelCheck, MigrationResult, MigrationTuning, never_cancelled
from .nocloud import seed_iso
from .power import PowerState
from .registry import register_backend
from .spec import GuestSpec, Progress, no_progress
from .stats import HostStats

if TYPE_CHECKING:
    from ..models import Host

log = logging.getLogger(__name__)

GIB = 1024**3
# a console read waits this long for a busy pool (see console_log), then reads on
CONSOLE_REFRESH_WAIT = 2.0

# QEMU through libvirt offers every capability; the test driver simulates guests that
# never run code: no migration, no console output, no counters, no backups (it has no
# backup API); its snapshots are its own internal ones (hosting/backends/libvirt_disks.py).
QEMU_CAPABILITIES = frozenset(Capability)
TEST_DRIVER_CAPABILITIES = frozenset(
    {Capability.PAUSE, Capability.SNAPSHOTS, Capability.MEMORY_SNAPSHOTS}
)


def interface_macs(xml: str) -> list[str]:
    """The MAC addresses of a domain's network interfaces (libvirt names a device by it)."""
    root = ET.fromstring(xml)
    return [
        mac.get("address", "")
        for mac in root.findall("devices/interface/mac")
        if mac.get("address")
    ]


def is_test_uri(uri: str) -> bool:
    return uri.startswith("test:")


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


def _volume_format(vol: libvirt.virStorageVol) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return fmt.get("type", "raw") if fmt is not None else "raw"


@register_backend(BackendKind.LIBVIRT)
class LibvirtBackend(LibvirtDisksMixin, Backend):
    capabilities = QEMU_CAPABILITIES

    def __init__(
        self,
        *,
        uri: str,
        pool: str,
        virt_type: str | None = None,
        pool_path: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        shared_pools: frozenset[str] = frozenset(),
        migration_address: str | None = None,
    ):
        self.uri = uri
        self.pool_name = pool
        self.is_test_driver = is_test_uri(uri)
        if self.is_test_driver:
            self.virt_type = "test"
            self.capabilities = TEST_DRIVER_CAPABILITIES
        else:
            self.virt_type = virt_type or "qemu"
        self.pool_path = pool_path or f"/var/lib/paddock/{pool}"
        self.connect_timeout = connect_timeout
        # pools whose directory every host sees at the same path (NFS, a cluster file
        # system, the testbed's shared directory): disks there are not copied
        self.shared_pools = frozenset(shared_pools)
        # where the target of a live migration receives its stream: the address its URI
        # reaches it at, unless set (hosts that share a hostname need it)
        self.migration_address = migration_address or migration_host(uri)

    @classmethod
    def for_host(cls, host: Host) -> LibvirtBackend:
        from django.conf import settings

        from ..validators import libvirt_uri_problem

        # checked on save too; here again so that nothing opens a URI saved some other way
        if problem := libvirt_uri_problem(host.libvirt_uri):
            raise BackendError(f"Refused libvirt URI of host {host.name}: {problem}")
        return cls(
            uri=host.libvirt_uri,
            pool=host.storage_pool,
            virt_type=settings.VIRT_TYPE or host.effective_virt_type,
            pool_path=f"{settings.STORAGE_ROOT}/{host.storage_pool}",
            connect_timeout=settings.CONNECT_TIMEOUT,
            shared_pools=frozenset(host.shared_pools),
            migration_address=host.migration_address or None,
        )

    @classmethod
    def capabilities_for(cls, host: Host) -> frozenset[Capability]:
        return TEST_DRIVER_CAPABILITIES if is_test_uri(host.libvirt_uri) else cls.capabilities

    @property
    def conn(self) -> libvirt.virConnect:
        return connect(self.uri, timeout=self.connect_timeout)

    # --- host -----------------------------------------------------------------------
    def host_info(self) -> HostInfo:
        with translated("read host info", self.uri):
            model, memory_mib, cpus, *_ = self.conn.getInfo()
            version = self.conn.getVersion()
            hv_type = self.conn.getType()
            disk_gib = 0
            pool = self._pool(create=not self.is_test_driver)
            if pool is not None:
                disk_gib = pool.info()[1] // GIB
            caps = ET.fromstring(self.conn.getCapabilities())
            cpu_model = caps.findtext("host/cpu/model") or model
            lib_version = self.conn.getLibVersion()
            networks = tuple(sorted(self.conn.listNetworks() + self.conn.listDefinedNetworks()))
            pools = tuple(
                sorted(self.conn.listStoragePools() + self.conn.listDefinedStoragePools())
            )
            virt_type = self._best_virt_type(caps.findtext("host/cpu/arch") or "x86_64")
        return HostInfo(
            cpus=cpus,
            memory_mib=memory_mib,
            disk_gib=disk_gib,
            cpu_model=cpu_model,
            hypervisor_version=f"{hv_type} {_version(version)}",
            libvirt_version=_version(lib_version),
            networks=networks,
            pools=pools,
            virt_type=virt_type,
        )

    def _best_virt_type(self, arch: str) -> str:
        """kvm where the host's domain capabilities offer it, qemu (TCG) otherwise."""
        if self.is_test_driver:
            return "test"
        try:
            self.conn.getDomainCapabilities(None, arch, None, "kvm", 0)
        except libvirt.libvirtError as exc:
            log.info("%s offers no KVM, guests use TCG: %s", self.uri, exc.get_error_message())
            return "qemu"
        return "kvm"

    def stats(self) -> HostStats:
        with translated("read guest statistics", self.uri):
            records = self.conn.getAllDomainStats(STATS_GROUPS, 0)
        timestamp = time.time()
        return HostStats(
            timestamp=timestamp,
            guests={dom.name(): guest_stats(values) for dom, values in records},
        )

    # --- storage --------------------------------------------------------------------
    def _pool(self, *, create: bool) -> libvirt.virStoragePool | None:
        try:
            pool = self.conn.storagePoolLookupByName(self.pool_name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            if not create:
                return None
            log.info(
                "defining storage pool %s at %s on %s", self.pool_name, self.pool_path, self.uri
            )
            pool = self.conn.storagePoolDefineXML(
                dir_pool_xml(name=self.pool_name, path=self.pool_path), 0
            )
            pool.build(0)
            pool.setAutostart(1)
        if not pool.isActive():
            pool.create(0)
        return pool

    def _volume(self, pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise

    def ensure_image(
        self, *, volume: str, size_bytes: int, source_path: str | None, fmt: str = "qcow2"
    ) -> None:
        """Make the image's base volume exist in the host's pool (uploaded once)."""
        with translated(f"import image {volume}", self.uri):
            pool = self._pool(create=True)
            assert pool is not None
            if self._volume(pool, volume) is not None:
                return
            if source_path and not os.path.exists(source_path):
                raise ImageNotAvailable(f"Image file {source_path} is missing from the store.")
            if source_path:
                size_bytes = max(size_bytes, os.path.getsize(source_path))
            vol = pool.createXML(volume_xml(name=volume, capacity_bytes=size_bytes, fmt=fmt), 0)
            if source_path:
                self._upload(vol, source_path)

    def _upload(self, vol: libvirt.virStorageVol, source_path: str) -> None:
        stream = self.conn.newStream(0)
        size = os.path.getsize(source_path)
        vol.upload(stream, 0, size, 0)
        with open(source_path, "rb") as fh:
            stream.sendAll(lambda _s, nbytes, f: f.read(nbytes), fh)
        stream.finish()

    def create_disk(
        self, *, volume: str, base_volume: str, size_gib: int, overlay: bool = True
    ) -> str:
        """Create the guest's disk from the base volume, grown to size; return its path.
        `overlay` makes a qcow2 overlay backed by the base; otherwise a full copy."""
        with translated(f"create disk {volume}", self.uri):
            pool = self._pool(create=True)
            assert pool is not None
            existing = self._volume(pool, volume)
            if existing is not None:
                return existing.path()
            base = self._volume(pool, base_volume)
            if base is None:
                raise ImageNotAvailable(
                    f"Base image {base_volume} is not in pool {self.pool_name} on {self.uri}."
                )
            capacity = max(size_gib * GIB, base.info()[1])
            if overlay and not self.is_test_driver:
                base_format = _volume_format(base)
                xml = volume_xml(
                    name=volume,
                    capacity_bytes=capacity,
                    backing_path=base.path(),
                    backing_format=base_format,
                )
                vol = pool.createXML(xml, 0)
            else:
                vol = pool.createXMLFrom(volume_xml(name=volume, capacity_bytes=capacity), base, 0)
                if vol.info()[1] < capacity:
                    vol.resize(capacity, 0)
            return vol.path()

    def put_volume(self, *, volume: str, data: bytes) -> None:
        """Write a small raw volume (a seed ISO) into the pool, replacing an old one."""
        with translated(f"write volume {volume}", self.uri):
            pool = self._pool(create=True)
            assert pool is not None
            old = self._volume(pool, volume)
            if old is not None:
                old.delete(0)
            vol = pool.createXML(volume_xml(name=volume, capacity_bytes=len(data), fmt="raw"), 0)
            if self.is_test_driver:
                return  # the test driver keeps no volume contents
            stream = self.conn.newStream(0)
            vol.upload(stream, 0, len(data), 0)
            offset = 0
            while offset < len(data):
                offset += stream.send(data[offset : offset + 262144])
            stream.finish()

    def _pool_path(self, pool: libvirt.virStoragePool) -> str:
        return ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or self.pool_path

    def console_log_volume(self, name: str) -> str:
        return f"{name}.console.log"

    def console_log(self, name: str, *, max_bytes: int = 65536) -> str:
        if self.is_test_driver:
            return ""  # the test driver runs no guest that could print anything
        with translated(f"read the console of {name}", self.uri):
            pool = self._pool(create=False)
            if pool is None:
                return ""
            # the log's current size; while libvirt builds or fills another volume of the
            # pool (a provisioning, a backup) it refuses: read what it last knew instead
            refresh(pool, wait=CONSOLE_REFRESH_WAIT, stale_ok=True)
            vol = self._volume(pool, self.console_log_volume(name))
            if vol is None:
                return ""
            size = vol.info()[1]
            offset = max(0, size - max_bytes)
            if size == 0:
                return ""
            stream = self.conn.newStream(0)
            vol.download(stream, offset, size - offset, 0)
            chunks: list[bytes] = []
            stream.recvAll(lambda _s, data, acc: acc.append(data), chunks)
            stream.finish()
        return b"".join(chunks).decode("utf-8", errors="replace")

    # --- domains --------------------------------------------------------------------
    def _domain(self, name: str) -> libvirt.virDomain:
        return self.conn.lookupByName(name)

    # --- provisioning -----------------------------------------------------------------
    @staticmethod
    def disk_volume(name: str) -> str:
        return f"{name}-disk0.qcow2"

    @staticmethod
    def seed_volume(name: str) -> str:
        return f"{name}-seed.iso"

    def domain_spec(self, spec: GuestSpec) -> DomainSpec:
        """The libvirt domain of a guest on this host."""
        return DomainSpec(
            name=spec.name,
            uuid=spec.uuid,
            vcpus=spec.vcpus,
            memory_mib=spec.memory_mib,
            disk_volume=self.disk_volume(spec.name),
            seed_volume=self.seed_volume(spec.name) if spec.seed_files is not None else None,
            mac_address=spec.mac_address,
            network=spec.network,
            virt_type="test" if self.is_test_driver else (spec.virt_type or self.virt_type),
            memory_hard_limit=spec.memory_hard_limit,
            metadata=dict(spec.metadata),
        )

    def provision(self, spec: GuestSpec, *, progress: Progress | None = None) -> None:
        report = progress or no_progress
        image = spec.image
        report(10, f"Preparing image {image.volume}")
        self.ensure_image(
            volume=image.volume,
            size_bytes=image.min_size_bytes,
            source_path=image.source_path,
            fmt=image.format,
        )
        how = "overlay" if spec.disk_overlay else "copy"
        report(35, f"Creating {spec.disk_gib} GiB disk ({how})")
        self.create_disk(
            volume=self.disk_volume(spec.name),
            base_volume=image.volume,
            size_gib=spec.disk_gib,
            overlay=spec.disk_overlay,
        )
        if spec.seed_files is not None:
            report(50, "Writing the cloud-init seed")
            self.put_volume(volume=self.seed_volume(spec.name), data=seed_iso(spec.seed_files))
        report(60, "Defining the virtual machine")
        self.define(spec)
        report(80, "Booting")
        self.start(spec.name)

    def deprovision(self, name: str) -> None:
        self.undefine(name, volumes=[self.disk_volume(name), self.seed_volume(name)])

    def define(self, spec: GuestSpec) -> None:
        """Define the guest's domain unless it exists."""
        with translated(f"define {spec.name}", self.uri):
            try:
                self._domain(spec.name)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            spec_for_host = self.domain_spec(spec)
            log_path = ""
            if not self.is_test_driver:
                pool = self._pool(create=True)
                assert pool is not None
                log_path = f"{self._pool_path(pool)}/{self.console_log_volume(spec.name)}"
            self.conn.defineXML(
                domain_xml(spec_for_host, pool=self.pool_name, console_log_path=log_path)
            )

    def start(self, name: str) -> None:
        with translated(f"start {name}", self.uri):
            dom = self._domain(name)
            if not dom.isActive():
                dom.create()
            elif dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()

    def shutdown(self, name: str) -> None:
        with translated(f"shut down {name}", self.uri):
            dom = self._domain(name)
            if dom.isActive():
                dom.shutdown()

    def force_off(self, name: str) -> None:
        with translated(f"force off {name}", self.uri):
            dom = self._domain(name)
            if dom.isActive():
                dom.destroy()

    def reboot(self, name: str) -> None:
        with translated(f"reboot {name}", self.uri):
            dom = self._domain(name)
            if not dom.isActive():
                raise BackendError(f"{name} is not running.")
            dom.reboot(0)

    def pause(self, name: str) -> None:
        with translated(f"pause {name}", self.uri):
            dom = self._domain(name)
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()

    def resume(self, name: str) -> None:
        with translated(f"resume {name}", self.uri):
            dom = self._domain(name)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()

    def set_bandwidth(self, name: str, kbps: int | None) -> None:
        with translated(f"set the bandwidth of {name}", self.uri):
            dom = self._domain(name)
            # libvirt's QoS average is in kilobytes per second; 0 removes the limit
            average = max(1, kbps // 8) if kbps else 0
            params = {"inbound.average": average, "outbound.average": average}
            # the running guest and its definition, one at a time (some drivers refuse both)
            scopes = [libvirt.VIR_DOMAIN_AFFECT_CONFIG]
            if dom.isActive():
                scopes.insert(0, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            for mac in interface_macs(dom.XMLDesc(0)):
                for scope in scopes:
                    dom.setInterfaceParameters(mac, params, scope)

    def undefine(self, name: str, *, volumes: list[str]) -> None:
        """Force off, remove the domain and delete its volumes and console log; absent
        parts are fine."""
        with translated(f"remove {name}", self.uri):
            try:
                dom = self._domain(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            else:
                if dom.isActive():
                    dom.destroy()
                flags = (
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                )
                try:
                    dom.undefineFlags(flags)
                except libvirt.libvirtError:  # a driver without some of these flags
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            pool = self._pool(create=False)
            if pool is None:
                return
            refresh(pool)
            # snapshot overlays, memory files and backup scratch files (libvirt_disks)
            extra = [v for v in pool.listVolumes() if v.startswith(self.disk_files_prefixes(name))]
            for vol_name in [*volumes, *extra, self.console_log_volume(name)]:
                vol = self._volume(pool, vol_name)
                if vol is not None:
                    vol.delete(0)

    def state(self, name: str) -> PowerState:
        with translated(f"read state of {name}", self.uri):
            try:
                code = self._domain(name).state()[0]
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return PowerState.MISSING
                raise
        return STATE_MAP.get(code, PowerState.OTHER)

    def domain_states(self) -> dict[str, PowerState]:
        with translated("list domains", self.uri):
            return {
                dom.name(): STATE_MAP.get(dom.state()[0], PowerState.OTHER)
                for dom in self.conn.listAllDomains(0)
            }

    # --- migration ------------------------------------------------------------------
    def check_migration(self, name: str, target: Backend, *, live: bool = True) -> list[str]:
        problems = super().check_migration(name, target, live=live)
        if isinstance(target, LibvirtBackend) and target.uri == self.uri:
            problems.append("The target is the guest's own host.")
        if self.state(name) == PowerState.MISSING:
            problems.append(f"There is no guest {name} on the source host.")
        if problems or not isinstance(target, LibvirtBackend):
            return problems
        return libvirt_migration_checks.check(self, name, target, live=live)

    def migrate(
        self,
        name: str,
        target: Backend,
        *,
        live: bool = True,
        tuning: MigrationTuning | None = None,
        progress: Progress | None = None,
        should_cancel: CancelCheck = never_cancelled,
    ) -> MigrationResult:
        needed = Capability.LIVE_MIGRATION if live else Capability.OFFLINE_MIGRATION
        if not (self.supports(needed) and target.supports(needed)):
            raise NotSupported(f"These hosts cannot do {needed.label}.")
        assert isinstance(target, LibvirtBackend)
        if live:
            return libvirt_migration.migrate_live(
                self,
                name,
                target,
                tuning=tuning or MigrationTuning(),
                progress=progress,
                should_cancel=should_cancel,
            )
        return libvirt_migration.migrate_offline(
            self, name, target, progress=progress, should_cancel=should_cancel
        )
