"""LXC system containers: a host of kind container, driven through Paddock's LXC agent
(lxc_agent.py) on the host, reached over SSH or run on this machine (lxc_transport.py).

What a container is on the host (its config, an ext4 image of the plan's disk size, limits
in cgroups, the network LXC sets up itself) is the agent's business; this class turns a
`GuestSpec` and the Backend interface into agent operations.

Capabilities: power actions and pause (freezer), stats (cgroup and veth counters), the
console log, disk snapshots (image copies taken frozen), full backups (a tar of the root
file system) and offline migration (stop, send, start). No live migration: CRIU does not
work on the machines Paddock is tested on (README), and no incremental backups.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import TYPE_CHECKING, Any

from .base import Backend, DiskBackup, HostInfo
from .capabilities import Capability
from .errors import BackendError, Cancelled, DomainNotFound, ImageNotAvailable, NotSupported
from .lxc_transport import CHUNK, Transport, transport_for
from .migration import CancelCheck, MigrationResult, MigrationTuning, never_cancelled
from .power import PowerState
from .registry import register_backend
from .spec import ByteSink, GuestSpec, Progress, no_progress
from .stats import DiskStats, GuestStats, HostStats, NicStats

if TYPE_CHECKING:
    from ..models import Host

LXC_CAPABILITIES = frozenset(
    {
        Capability.OFFLINE_MIGRATION,
        Capability.SNAPSHOTS,
        Capability.BACKUP,
        Capability.SERIAL_CONSOLE,
        Capability.STATS,
        Capability.PAUSE,
        Capability.MEMORY_HARD_LIMIT,
    }
)


def _power(word: str) -> PowerState:
    try:
        return PowerState(word)
    except ValueError:
        return PowerState.OTHER


def spec_args(spec: GuestSpec) -> dict[str, Any]:
    """What the agent needs of a spec (plain JSON)."""
    return {
        "name": spec.name,
        "hostname": spec.hostname or str(spec.metadata.get("hostname", "")) or spec.name,
        "vcpus": spec.vcpus,
        "memory_mib": spec.memory_mib,
        "swap_mib": spec.swap_mib,
        "max_processes": spec.max_processes,
        "disk_bytes": spec.disk_bytes,
        "network": spec.network,
        "mac_address": spec.mac_address,
        "addresses": list(spec.addresses),
        "gateway": spec.gateway,
        "nameservers": list(spec.nameservers),
        "ssh_keys": list(spec.ssh_keys),
        "template": spec.image.volume,
    }


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@register_backend("lxc")
class LxcBackend(Backend):
    capabilities = LXC_CAPABILITIES

    def __init__(self, transport: Transport, *, network: str = "lxcbr0", name: str = ""):
        self.transport = transport
        self.network = network
        self.host_name = name or transport.where

    @classmethod
    def for_host(cls, host: Host) -> LxcBackend:
        from django.conf import settings

        from ..validators import lxc_uri_problem

        if problem := lxc_uri_problem(host.libvirt_uri):
            raise BackendError(f"Refused LXC URI of host {host.name}: {problem}")
        transport = transport_for(
            host.libvirt_uri,
            key_file=settings.LXC_SSH_KEY or None,
            known_hosts=settings.LXC_SSH_KNOWN_HOSTS or None,
            accept_new=settings.LXC_SSH_ACCEPT_NEW,
            timeout=settings.CONNECT_TIMEOUT,
        )
        return cls(transport, network=host.network, name=host.name)

    def _call(self, op: str, **args: Any) -> Any:
        return self.transport.call(op, args)

    # --- the host -------------------------------------------------------------------
    def host_info(self) -> HostInfo:
        info = self._call("info")
        return HostInfo(
            cpus=int(info["cpus"]),
            memory_mib=int(info["memory_mib"]),
            disk_gib=int(info["disk_gib"]),
            cpu_model=info["cpu_model"] or "unknown",
            hypervisor_version=f"LXC {info['lxc_version']} (Linux {info['kernel']})",
            networks=tuple(info["bridges"]),
            pools=(),
            virt_type="lxc",
        )

    def stats(self) -> HostStats:
        sample = self._call("stats")
        guests = {}
        for name, raw in sample["guests"].items():
            guests[name] = GuestStats(
                state=_power(raw["state"]),
                cpu_time_ns=raw.get("cpu_time_ns"),
                memory_current_bytes=raw.get("memory_current_bytes"),
                memory_available_bytes=raw.get("memory_available_bytes"),
                memory_unused_bytes=raw.get("memory_unused_bytes"),
                memory_rss_bytes=raw.get("memory_rss_bytes"),
                disks=tuple(DiskStats(**d) for d in raw.get("disks", [])),
                nics=tuple(NicStats(**n) for n in raw.get("nics", [])),
            )
        return HostStats(timestamp=float(sample["timestamp"]), guests=guests)

    def domain_states(self) -> dict[str, PowerState]:
        return {name: _power(state) for name, state in self._call("list").items()}

    # --- a guest's life -------------------------------------------------------------
    def ensure_template(self, spec: GuestSpec, progress: Progress = no_progress) -> None:
        """The spec's root file system tarball on the host, uploaded once."""
        volume = spec.image.volume
        path = spec.image.source_path
        if not path:
            raise ImageNotAvailable(
                f"Template {volume} is not on {self.host_name} and has no file to upload."
            )
        progress(10, f"Uploading template {volume}")
        try:
            with open(path, "rb") as payload:
                self.transport.call(
                    "put_template", {"volume": volume, "sha256": _sha256(path)}, payload=payload
                )
        except OSError as exc:
            raise ImageNotAvailable(f"Cannot read template {volume}: {exc}") from exc

    def provision(self, spec: GuestSpec, *, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        if spec.image.format != "tar":
            raise ImageNotAvailable(
                f"Image {spec.image.volume} is a {spec.image.format} disk, not a container "
                "root file system (tar)."
            )
        if self._call("needs_template", name=spec.name, volume=spec.image.volume):
            self.ensure_template(spec, progress)
        progress(40, "Creating the container's root file system")
        self._call("create", spec=spec_args(spec))
        progress(80, "Starting the container")
        self._call("start", name=spec.name)

    def deprovision(self, name: str) -> None:
        self._call("destroy", name=name)

    def state(self, name: str) -> PowerState:
        return _power(self._call("state", name=name))

    def start(self, name: str) -> None:
        self._call("start", name=name)

    def shutdown(self, name: str) -> None:
        self._call("shutdown", name=name)

    def force_off(self, name: str) -> None:
        self._call("force_off", name=name)

    def reboot(self, name: str) -> None:
        self._call("reboot", name=name)

    def pause(self, name: str) -> None:
        self._call("freeze", name=name)

    def resume(self, name: str) -> None:
        self._call("unfreeze", name=name)

    def console_log(self, name: str, *, max_bytes: int = 65536) -> str:
        try:
            return self._call("console", name=name, max_bytes=max_bytes)
        except DomainNotFound:
            return ""

    def set_bandwidth(self, name: str, kbps: int | None) -> None:
        self._call("set_bandwidth", name=name, kbps=kbps)

    def exec(self, name: str, *command: str, timeout: float = 60) -> dict[str, Any]:
        """Run a command inside the running container: {status, stdout, stderr}."""
        return self._call("exec", name=name, command=list(command), timeout=timeout)

    # --- snapshots --------------------------------------------------------------------
    def create_snapshot(
        self, name: str, key: str, *, description: str = "", with_memory: bool = False
    ) -> None:
        if with_memory:
            raise NotSupported("Containers take disk snapshots only (no memory state).")
        self._call("snapshot_create", name=name, key=key)

    def revert_snapshot(self, name: str, key: str, *, with_memory: bool = False) -> None:
        if with_memory:
            raise NotSupported("Containers take disk snapshots only (no memory state).")
        self._call("snapshot_revert", name=name, key=key)

    def delete_snapshot(self, name: str, key: str) -> None:
        self._call("snapshot_delete", name=name, key=key)

    def snapshot_keys(self, name: str) -> list[str]:
        return list(self._call("snapshot_list", name=name))

    # --- backups ----------------------------------------------------------------------
    def backup_disk(
        self,
        name: str,
        *,
        checkpoint: str,
        since: str | None,
        sink: ByteSink,
        progress: Progress | None = None,
    ) -> DiskBackup:
        """A tar of the root file system (always a full one: no checkpoint is left)."""
        progress = progress or no_progress
        size = int(self._call("disk_bytes", name=name))
        running = self.transport.open("export_rootfs", {"name": name})
        running.close_input()
        streamed, reported = 0, 0.0
        try:
            while chunk := running.read(CHUNK):
                sink(chunk)
                streamed += len(chunk)
                if time.monotonic() - reported > 1:
                    reported = time.monotonic()
                    progress(5 + min(90, 90 * streamed // max(size, 1)), f"{streamed} bytes read")
            running.finish()
        except BaseException:
            running.abort()
            raise
        return DiskBackup(
            disk="rootfs",
            format="tar",
            virtual_bytes=size,
            streamed_bytes=streamed,
            consistency="crash-consistent",
            checkpoint="",
        )

    def replace_disk(self, name: str, *, source_path: str) -> None:
        try:
            with open(source_path, "rb") as payload:
                self.transport.call("import_rootfs", {"name": name}, payload=payload)
        except OSError as exc:
            raise BackendError(f"Cannot read {source_path}: {exc}") from exc

    # --- migration -----------------------------------------------------------------
    def check_migration(self, name: str, target: Backend, *, live: bool = True) -> list[str]:
        problems = super().check_migration(name, target, live=live)
        if problems:
            return problems
        assert isinstance(target, LxcBackend)
        if self.transport.where == target.transport.where and (
            self.transport.lxcpath == target.transport.lxcpath
        ):
            problems.append("The source and the target are the same host.")
        try:
            if self.state(name) == PowerState.MISSING:
                problems.append(f"The container is not on {self.host_name}.")
            if target.state(name) != PowerState.MISSING:
                problems.append(f"A container of that name exists on {target.host_name}.")
            if target.network not in target.host_info().networks:
                problems.append(f"{target.host_name} has no bridge {target.network}.")
        except BackendError as exc:
            problems.append(exc.message)
        return problems

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
        if live:
            raise NotSupported("Containers move offline only (stop, transfer, start).")
        assert isinstance(target, LxcBackend)
        progress = progress or no_progress
        size = int(self._call("disk_bytes", name=name))
        started = time.monotonic()
        sending = self.transport.open("send", {"name": name})
        sending.close_input()
        receiving = target.transport.open("receive", {"name": name, "network": target.network})
        sent, reported = 0, 0.0
        try:
            while chunk := sending.read(CHUNK):
                if should_cancel():
                    raise Cancelled("The move was cancelled; the container stays here.")
                receiving.write(chunk)
                sent += len(chunk)
                if time.monotonic() - reported > 1:
                    reported = time.monotonic()
                    share = min(90, 90 * sent // max(size, 1))
                    progress(5 + share, f"Copied {sent >> 20} MiB to {target.host_name}")
            sending.finish()
            receiving.finish()
        except BaseException:
            sending.abort()
            receiving.abort()
            with contextlib.suppress(BackendError):
                target._call("destroy", name=name)
            raise
        self._call("destroy", name=name)
        seconds = time.monotonic() - started
        progress(100, f"Moved to {target.host_name}")
        return MigrationResult(
            live=False,
            total_seconds=seconds,
            migration_seconds=seconds,
            bytes_sent=sent,
            disk_bytes=size,
            storage="copied",
        )
