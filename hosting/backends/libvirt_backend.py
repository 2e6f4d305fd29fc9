"""The libvirt backend: works against `test:///default` and a real `qemu:///system`.

This module is the only one that imports libvirt. Connections are cached per process and
URI (the test driver keeps its state inside the process that opened it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import libvirt

from .base import Backend, DomainSpec, HostInfo, PowerState
from .domain_xml import dir_pool_xml, domain_xml, volume_xml
from .errors import BackendError, DomainNotFound, HostUnreachable, ImageNotAvailable

log = logging.getLogger(__name__)

GIB = 1024**3

# libvirt prints every error to stderr by default; we raise ours instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_connections: dict[str, libvirt.virConnect] = {}
_lock = threading.Lock()

_UNREACHABLE_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
}
_STATE_MAP = {
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
}


@contextlib.contextmanager
def translated(what: str, uri: str) -> Iterator[None]:
    """Turn libvirt errors into the project's exceptions, with a message for humans."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        text = exc.get_error_message() or str(exc)
        if code == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainNotFound(f"{what}: no such domain on {uri}.") from exc
        if code in _UNREACHABLE_CODES:
            raise HostUnreachable(f"{what}: cannot reach {uri}: {text}") from exc
        raise BackendError(f"{what} failed on {uri}: {text}") from exc


def _connect(uri: str) -> libvirt.virConnect:
    with _lock:
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        with translated("connect", uri):
            conn = libvirt.open(uri)
        _connections[uri] = conn
        return conn


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


def _volume_format(vol: libvirt.virStorageVol) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return fmt.get("type", "raw") if fmt is not None else "raw"


class LibvirtBackend(Backend):
    def __init__(
        self, *, uri: str, pool: str, virt_type: str | None = None, pool_path: str | None = None
    ):
        self.uri = uri
        self.pool_name = pool
        self.is_test_driver = uri.startswith("test:")
        if self.is_test_driver:
            self.virt_type = "test"
        else:
            self.virt_type = virt_type or os.environ.get("PADDOCK_VIRT_TYPE", "qemu")
        self.pool_path = pool_path or f"/var/lib/paddock/{pool}"

    @property
    def conn(self) -> libvirt.virConnect:
        return _connect(self.uri)

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
        return HostInfo(
            cpus=cpus,
            memory_mib=memory_mib,
            disk_gib=disk_gib,
            cpu_model=cpu_model,
            hypervisor_version=f"{hv_type} {_version(version)}",
            libvirt_version=_version(lib_version),
            networks=networks,
            pools=pools,
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

    def ensure_image(self, *, volume: str, size_bytes: int, source_path: str | None) -> None:
        with translated(f"import image {volume}", self.uri):
            pool = self._pool(create=True)
            assert pool is not None
            if self._volume(pool, volume) is not None:
                return
            if source_path and not os.path.exists(source_path):
                raise ImageNotAvailable(f"Image file {source_path} is missing from the store.")
            if source_path:
                size_bytes = max(size_bytes, os.path.getsize(source_path))
            vol = pool.createXML(volume_xml(name=volume, capacity_bytes=size_bytes), 0)
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
            pool.refresh(0)
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

    def define(self, spec: DomainSpec) -> None:
        with translated(f"define {spec.name}", self.uri):
            try:
                self._domain(spec.name)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            spec_for_host = DomainSpec(**{**spec.__dict__, "virt_type": self.virt_type})
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

    def suspend(self, name: str) -> None:
        with translated(f"suspend {name}", self.uri):
            dom = self._domain(name)
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()

    def resume(self, name: str) -> None:
        with translated(f"resume {name}", self.uri):
            dom = self._domain(name)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()

    def undefine(self, name: str, *, volumes: list[str]) -> None:
        with translated(f"remove {name}", self.uri):
            try:
                dom = self._domain(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            else:
                if dom.isActive():
                    dom.destroy()
                flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                try:
                    dom.undefineFlags(flags)
                except libvirt.libvirtError:
                    dom.undefine()
            pool = self._pool(create=False)
            if pool is None:
                return
            pool.refresh(0)
            for vol_name in [*volumes, self.console_log_volume(name)]:
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
        return _STATE_MAP.get(code, PowerState.OTHER)

    def domain_states(self) -> dict[str, PowerState]:
        with translated("list domains", self.uri):
            return {
                dom.name(): _STATE_MAP.get(dom.state()[0], PowerState.OTHER)
                for dom in self.conn.listAllDomains(0)
            }
