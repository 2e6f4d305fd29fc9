"""Migration between two libvirt hosts: live (pre-copy, escalating to post-copy) and
offline (a stopped guest, its definition and volumes streamed over). The pre-checks are
in libvirt_migration_checks, the volumes' journey in libvirt_volumes.

Live: `virDomainMigrateToURI3` peer to peer (the source's libvirtd talks to the target's),
undefined on the source and defined on the target once it runs there, with the target's
own migration address (hosts that share a hostname, like the testbed's namespaces, would
otherwise send the stream to themselves), an explicit bandwidth and a downtime target.
Disks on a pool that both hosts declare shared stay put (`VIR_MIGRATE_UNSAFE` then, and
only then: libvirt cannot tell a shared directory from a local one); any other writable
disk is copied in the same migration (`VIR_MIGRATE_NON_SHARED_DISK` into a volume made
beforehand on the target with the same backing image), read-only volumes (the seed) and
the console log are streamed over before. A thread watches libvirt's job statistics:
progress, cancel (`abortJob`), the time limit, and escalation when it does not converge.

On any failure the guest keeps running on the source (pre-copy guarantees it) and what was
made on the target for it is removed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import libvirt

from .errors import BackendError, Cancelled, OperationTimeout
from .libvirt_connections import translated
from .libvirt_migration_checks import lookup_domain
from .libvirt_volumes import (
    TargetVolumes,
    console_if_copied,
    console_volume,
    domain_disks,
    refresh_shared,
    remove_volumes,
    to_copy,
)
from .migration import CancelCheck, MigrationResult, MigrationTuning, never_cancelled
from .spec import Progress, no_progress

if TYPE_CHECKING:
    from .libvirt_backend import LibvirtBackend

log = logging.getLogger(__name__)

POLL = 0.25
# Not VIR_MIGRATE_PERSIST_DEST: the target would write (and fsync) the definition while the
# guest is paused at the switch-over; it is defined on the target right after instead.
LIVE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)
PERSISTENT_XML = (
    libvirt.VIR_DOMAIN_XML_INACTIVE
    | libvirt.VIR_DOMAIN_XML_SECURE
    | libvirt.VIR_DOMAIN_XML_MIGRATABLE
)


class MigrationTimeout(OperationTimeout):
    """The migration did not finish in time and was aborted; not worth an automatic
    retry (the guest dirties memory as fast as before)."""

    transient = False


class PostcopyFailed(BackendError):
    """A post-copy migration broke off: the guest is paused, split between two hosts."""


def migration_host(uri: str) -> str | None:
    """The address a libvirt URI reaches its host at (None for a local URI)."""
    return urlsplit(uri).hostname or None


# --- live ----------------------------------------------------------------------------------


def migrate_live(
    src: LibvirtBackend,
    name: str,
    dst: LibvirtBackend,
    *,
    tuning: MigrationTuning,
    progress: Progress | None = None,
    should_cancel: CancelCheck = never_cancelled,
) -> MigrationResult:
    report = progress or no_progress
    started = time.monotonic()
    with translated(f"migrate {name}", src.uri):
        dom = src.conn.lookupByName(name)
        xml = dom.XMLDesc(0)
        persistent = dom.XMLDesc(PERSISTENT_XML) if dom.isPersistent() else None
        disks = domain_disks(src.conn, xml)
        console_pool, console_vol = console_volume(src, name, xml)
    copied = to_copy(src, dst, disks)
    result = MigrationResult(live=True, storage="copied" if copied else "shared")
    volumes = TargetVolumes(src, dst)
    try:
        with translated(f"prepare {dst.uri} for {name}", dst.uri):
            refresh_shared(dst, disks)
            for disk in copied:
                if disk.readonly:
                    report(5, f"Copying {disk.volume} to the target")
                    volumes.copy(disk.pool, disk.volume)
                else:
                    volumes.precreate(disk.pool, disk.volume)
            if console_pool not in src.shared_pools or console_pool not in dst.shared_pools:
                volumes.copy(console_pool, console_vol, missing_ok=True)
        flags = LIVE_FLAGS
        params: dict[str, object] = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: tuning.bandwidth_mib_s}
        address = dst.migration_address
        if address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{_bracketed(address)}"
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = address
        writable = [d.dev for d in copied if not d.readonly]
        if writable:
            # the whole chain's data into the overlay made above (libvirt 9 refuses the
            # incremental copy, _INC, into a volume of a pool; the base is there anyway)
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = writable
        if any(d.pool in src.shared_pools for d in disks):
            flags |= libvirt.VIR_MIGRATE_UNSAFE  # declared shared: libvirt cannot tell
        if tuning.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        # libvirt refuses post-copy together with a storage copy
        postcopy_allowed = tuning.postcopy and not writable
        if postcopy_allowed:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        with translated(f"migrate {name}", src.uri):
            dom.migrateSetMaxDowntime(tuning.downtime_ms, 0)
        report(10, f"Migrating live to {dst.uri} ({result.storage} storage)")
        _run_watched(
            src,
            dom,
            name,
            dst,
            flags=flags,
            params=params,
            tuning=tuning,
            postcopy_allowed=postcopy_allowed,
            result=result,
            report=report,
            should_cancel=should_cancel,
            started=started,
        )
    except PostcopyFailed:
        raise  # nothing may be removed: both hosts hold part of the guest
    except BaseException:
        _clean_target(src, name, dst, volumes)
        raise
    _completed_stats(dst, name, result, extra_bytes=volumes.bytes)
    if persistent is not None:  # the guest runs on the target: make it persistent there
        with translated(f"define {name} on the target", dst.uri):
            dst.conn.defineXML(persistent)
    console = console_if_copied(src, dst, console_pool, console_vol)
    remove_volumes(src, [(d.pool, d.volume) for d in copied] + console)
    result.total_seconds = round(time.monotonic() - started, 3)
    return result


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _run_watched(
    src: LibvirtBackend,
    dom: libvirt.virDomain,
    name: str,
    dst: LibvirtBackend,
    *,
    flags: int,
    params: dict[str, object],
    tuning: MigrationTuning,
    postcopy_allowed: bool,
    result: MigrationResult,
    report: Progress,
    should_cancel: CancelCheck,
    started: float,
) -> None:
    """migrateToURI3 in a thread; this one watches, escalates, cancels and times out."""
    outcome: dict[str, BaseException] = {}
    dconnuri = dst.uri

    def run() -> None:
        try:
            dom.migrateToURI3(dconnuri, params, flags)
        except BaseException as exc:  # handed to the watcher
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"migrate-{name}", daemon=True)
    worker.start()
    downtime = tuning.downtime_ms
    next_step = started + tuning.escalate_after_s
    stopped = ""  # why we aborted: "cancelled" or "timeout"
    while True:
        worker.join(POLL)
        if not worker.is_alive():
            break
        now = time.monotonic()
        stats = _job_stats(dom)
        if stats:
            result.iterations = int(stats.get("memory_iteration", result.iterations))
            report(_percent(stats), _describe(stats))
        if not stopped and should_cancel():
            stopped = "cancelled"
            _abort(dom)
        elif not stopped and now - started > tuning.timeout_s:
            stopped = "timeout"
            _abort(dom)
        elif not stopped and now >= next_step and not result.postcopy and stats:
            next_step = now + tuning.escalate_every_s
            if downtime < tuning.max_downtime_ms:
                downtime = min(tuning.max_downtime_ms, downtime * 2)
                with contextlib.suppress(libvirt.libvirtError):
                    dom.migrateSetMaxDowntime(downtime, 0)
                result.escalations.append(f"downtime target {downtime} ms")
                report(_percent(stats), f"Not converging: downtime target raised to {downtime} ms")
            elif postcopy_allowed:
                try:
                    dom.migrateStartPostCopy(0)
                except libvirt.libvirtError as exc:
                    log.warning("post-copy of %s refused: %s", name, exc)
                else:
                    result.postcopy = True
                    result.escalations.append("post-copy")
                    report(_percent(stats), "Not converging: switched to post-copy")
    error = outcome.get("error")
    if error is None:
        return  # done, also when an abort came too late to stop it
    if result.postcopy:
        # the target runs the guest and the source holds the rest of its memory: neither
        # may be removed; libvirt can resume the transfer (virsh migrate --postcopy-resume)
        raise PostcopyFailed(
            f"Post-copy migration of {name} failed: the guest is paused on both hosts "
            f"until the transfer is resumed ({error})."
        )
    if stopped == "cancelled":
        raise Cancelled("The migration was cancelled; the server stays on its host.")
    if stopped == "timeout":
        raise MigrationTimeout(
            f"The migration did not finish within {tuning.timeout_s:g} s and was aborted; "
            "the server stays on its host."
        )
    if error is not None:
        if isinstance(error, libvirt.libvirtError):
            with translated(f"migrate {name} to {dst.uri}", src.uri):
                raise error
        raise error


def _job_stats(dom: libvirt.virDomain) -> dict:
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return {}
    return stats if stats.get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE else {}


def _abort(dom: libvirt.virDomain) -> None:
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        log.warning("abortJob: %s", exc.get_error_message())


def _percent(stats: dict) -> int:
    total = stats.get("data_total") or 0
    remaining = stats.get("data_remaining") or 0
    if not total:
        return 10
    done = max(0.0, min(1.0, 1 - remaining / total))
    return 10 + int(done * 85)


def _describe(stats: dict) -> str:
    mib = 1024 * 1024
    page = stats.get("memory_page_size") or 4096
    dirty = (stats.get("memory_dirty_rate") or 0) * page / mib
    return (
        f"Pass {stats.get('memory_iteration', 0)}: "
        f"{(stats.get('data_processed') or 0) / mib:.0f} MiB sent, "
        f"{(stats.get('data_remaining') or 0) / mib:.0f} MiB left, "
        f"dirtying {dirty:.1f} MiB/s"
    )


def _completed_stats(
    dst: LibvirtBackend, name: str, result: MigrationResult, *, extra_bytes: int
) -> None:
    """Downtime and bytes from libvirt's record of the finished job (on the target)."""
    stats: dict = {}
    try:
        dom = dst.conn.lookupByName(name)
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError as exc:
        log.warning("no completed job statistics for %s: %s", name, exc)
    if "downtime" in stats:
        result.downtime_ms = int(stats["downtime"])
    result.migration_seconds = int(stats.get("time_elapsed", 0)) / 1000
    result.memory_bytes = int(stats.get("memory_processed", 0))
    result.disk_bytes = int(stats.get("disk_processed", 0)) + extra_bytes
    result.bytes_sent = int(stats.get("data_processed", 0)) + extra_bytes
    result.iterations = int(stats.get("memory_iteration", result.iterations))


def _clean_target(src: LibvirtBackend, name: str, dst: LibvirtBackend, volumes: TargetVolumes):
    """After a failed move: leave nothing on the target, unless the guest runs there now
    (and not on the source), which makes it a move that succeeded."""
    try:
        there = lookup_domain(dst.conn, name)
        here = lookup_domain(src.conn, name)
        if there is not None and there.isActive() and (here is None or not here.isActive()):
            log.error("%s runs on %s after a failed migration: left there", name, dst.uri)
            return
        if there is not None:
            if there.isActive():
                there.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                there.undefine()
        volumes.remove()
    except libvirt.libvirtError as exc:
        log.warning("cleaning %s after a failed migration of %s: %s", dst.uri, name, exc)


# --- offline -------------------------------------------------------------------------------


def migrate_offline(
    src: LibvirtBackend,
    name: str,
    dst: LibvirtBackend,
    *,
    progress: Progress | None = None,
    should_cancel: CancelCheck = never_cancelled,
) -> MigrationResult:
    """A stopped guest: its volumes streamed to the target, its definition moved."""
    report = progress or no_progress
    started = time.monotonic()
    with translated(f"migrate {name}", src.uri):
        dom = src.conn.lookupByName(name)
        if dom.isActive():
            raise BackendError(f"{name} is running: an offline migration needs it stopped.")
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        disks = domain_disks(src.conn, xml)
        console_pool, console_vol = console_volume(src, name, xml)
    copied = to_copy(src, dst, disks)
    result = MigrationResult(live=False, storage="copied" if copied else "shared")
    volumes = TargetVolumes(src, dst)
    defined = False
    try:
        with translated(f"copy {name} to {dst.uri}", dst.uri):
            refresh_shared(dst, disks)
            for n, disk in enumerate(copied):
                if should_cancel():
                    raise Cancelled("The migration was cancelled; the server stays on its host.")
                report(10 + 70 * n // max(1, len(copied)), f"Copying {disk.volume}")
                volumes.copy(disk.pool, disk.volume)
            if console_pool not in src.shared_pools or console_pool not in dst.shared_pools:
                volumes.copy(console_pool, console_vol, missing_ok=True)
            report(85, "Defining the server on the target")
            if lookup_domain(dst.conn, name) is None:
                dst.conn.defineXML(xml)
                defined = True
        with translated(f"remove {name} from {src.uri}", src.uri):
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError:
                dom.undefine()
    except BaseException:
        if defined:
            with contextlib.suppress(libvirt.libvirtError):
                dst.conn.lookupByName(name).undefine()
        volumes.remove()
        raise
    console = console_if_copied(src, dst, console_pool, console_vol)
    remove_volumes(src, [(d.pool, d.volume) for d in copied] + console)
    result.total_seconds = round(time.monotonic() - started, 3)
    result.bytes_sent = result.disk_bytes = volumes.bytes
    return result
