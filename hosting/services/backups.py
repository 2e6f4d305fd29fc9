"""Backups of a server: back up, verify, restore (requests and the jobs that do them).

- A backup is full, or incremental on the server's last complete backup when that one
  left a checkpoint on the host and the chain is shorter than BACKUP_CHAIN_LENGTH. The
  backend streams the disk image (qcow2) from the host; it goes into the store
  compressed, with checksums (hosting/backups/store.py). The manifest records disks,
  sizes, chain, checksums, plan, image, addresses and consistency.
- Backups count against the plan's `backup_slots`; at most BACKUPS_PER_HOST run at once
  on one host and BACKUPS_PER_STORE over all hosts (a job over that waits and is
  retried).
- Verify re-reads every object of the backup's chain and checks every checksum; beat
  samples the least recently verified backups every day (`verify_sample`).
- Restore rebuilds the disk from the chain (hosting/backups/images.py) and puts it in
  place of the server's disk (the server stopped), or provisions a new server with it.
- A terminated server's backups are kept BACKUP_GRACE_DAYS (`expires_at`); its customer
  can restore one into a new server meanwhile; `purge_expired()` removes them after.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid as uuid_lib
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.db.models import Sum
from django.utils import timezone

from ..access import Caller
from ..actions import get_action, refuse
from ..backends import BackendError
from ..backends.errors import CheckpointMissing, HostBusy
from ..backups import images
from ..backups.store import StoreError, get_store
from ..choices import ACTIVE_JOB_STATUSES, BackupKind, BackupStatus, JobKind, ServerState
from ..models import Backup, Customer, Host, Job, Server, Snapshot
from ..runners import JobContext
from . import audit
from .errors import Conflict, NotPermitted, ServiceError
from .jobs import create_job
from .operations import server_runner
from .servers import lock_server
from .snapshots import restart_backup_chain

log = logging.getLogger(__name__)


def chain_length() -> int:
    return settings.BACKUP_CHAIN_LENGTH


def object_key(backup: Backup) -> str:
    return f"{backup.customer_id}/{backup.server.uuid}/{backup.uuid}.qcow2"


def _check_caller(server: Server, kind: str, caller: Caller) -> None:
    from ..permissions import caller_may

    entry = get_action(kind)
    access = caller.access
    if not access.can_write or not access.allows_customer(server.customer_id):
        raise NotPermitted(f"You cannot {entry.verb} this server.")
    if not caller_may(caller, kind):
        raise NotPermitted(f"You may not {entry.verb}.")


def storage_used(customer: Customer | int) -> int:
    """Bytes of the backup store a customer's backups take (billing reads it)."""
    customer_id = customer.pk if isinstance(customer, Customer) else customer
    total = (
        Backup.objects.filter(customer_id=customer_id).counted().aggregate(s=Sum("stored_bytes"))
    )
    return int(total["s"] or 0)


def _parent_for(server: Server) -> Backup | None:
    """The backup an incremental would build on, or None (a full one is due)."""
    last = Backup.objects.filter(server=server).complete().order_by("-created_at").first()
    if last is None or not last.checkpoint:
        return None
    if len(last.chain()) >= chain_length():
        return None
    return last


def request_backup(
    *, server: Server, caller: Caller, note: str = "", full: bool = False, scheduled: bool = False
) -> tuple[Backup, Job]:
    """Queue a backup of `server`: incremental when its chain allows, unless `full`. An
    on-demand one takes one of the plan's slots; a `scheduled` one (a policy's) not."""
    _check_caller(server, JobKind.BACKUP, caller)
    with transaction.atomic():
        locked = lock_server(server.pk)
        refuse(get_action(JobKind.BACKUP), locked, provider=caller.is_provider)
        slots = locked.plan.backup_slots
        if not scheduled and Backup.objects.filter(server=locked).counted().count() >= slots:
            raise Conflict(
                f"All {slots} backup slot(s) of the plan are in use: delete a backup first."
            )
        parent = None if full else _parent_for(locked)
        backup = Backup.objects.create(
            server=locked,
            customer_id=locked.customer_id,
            kind=BackupKind.INCREMENTAL if parent else BackupKind.FULL,
            parent=parent,
            note=note[:200],
            scheduled=scheduled,
        )
        job = create_job(
            kind=JobKind.BACKUP, server=locked, params={"backup": backup.pk}, caller=caller
        )
        audit.record(
            action="backup.create",
            caller=caller,
            target=locked,
            details={"backup": str(backup.uuid), "kind": backup.kind, "job": job.pk},
        )
    return backup, job


def request_verify(*, backup: Backup, caller: Caller) -> Job:
    """Re-read every file of `backup`'s chain and check its checksums."""
    return _queue_on_backup(backup, JobKind.BACKUP_VERIFY, caller, verb="verify", done="verified")


def request_restore(*, backup: Backup, caller: Caller) -> Job:
    """Restore `backup` onto its own server (which must be stopped)."""
    return _queue_on_backup(
        backup, JobKind.BACKUP_RESTORE, caller, verb="restore", done="restored", needs_state=True
    )


def _queue_on_backup(
    backup: Backup, kind: str, caller: Caller, *, verb: str, done: str, needs_state: bool = False
) -> Job:
    """A job of `kind` on a complete backup's server (with `needs_state`, in a state the
    action allows), with its audit event `backup.<verb>`."""
    server = backup.server
    _check_caller(server, kind, caller)
    if backup.status != BackupStatus.COMPLETE:
        raise Conflict(f"Only a complete backup can be {done}.")
    with transaction.atomic():
        locked = lock_server(server.pk)
        if needs_state:
            refuse(get_action(kind), locked, provider=caller.is_provider)
        job = create_job(kind=kind, server=locked, params={"backup": backup.pk}, caller=caller)
        audit.record(
            action=f"backup.{verb}",
            caller=caller,
            target=locked,
            details={"backup": str(backup.uuid), "job": job.pk},
        )
    return job


def restore_into_new_server(*, backup: Backup, hostname: str, caller: Caller) -> tuple[Server, Job]:
    """A new server (the backup's plan and image, new addresses) whose disk is the backup."""
    from .servers import create_server

    if backup.status != BackupStatus.COMPLETE:
        raise Conflict("Only a complete backup can be restored.")
    old = backup.server
    _check_caller(old, JobKind.BACKUP_RESTORE, caller)
    server, job = create_server(
        customer=old.customer,
        plan=old.plan,
        image=old.image,
        hostname=hostname,
        caller=caller,
        job_params={"restore_backup": backup.pk},
    )
    audit.record(
        action="backup.restore_new",
        caller=caller,
        target=server,
        details={"backup": str(backup.uuid), "from_server": str(old.uuid), "job": job.pk},
    )
    return server, job


def delete_backup(*, backup: Backup, caller: Caller) -> int:
    """Delete `backup` and the incrementals built on it; returns how many."""
    _check_caller(backup.server, JobKind.BACKUP, caller)
    with transaction.atomic():
        doomed = _descendants(backup)
        if any(b.status in (BackupStatus.PENDING, BackupStatus.RUNNING) for b in doomed):
            raise Conflict("A backup of this chain is being made; delete it when it ends.")
        keys = [object_key(b) for b in doomed]
        for b in reversed(doomed):  # children first (the parent link protects)
            b.delete()
        audit.record(
            action="backup.delete",
            caller=caller,
            target=backup.server,
            details={"backups": [str(b.uuid) for b in doomed]},
        )
    store = get_store()
    transaction.on_commit(lambda: [store.delete(k) for k in keys])
    return len(doomed)


def _descendants(backup: Backup) -> list[Backup]:
    found = [backup]
    index = 0
    while index < len(found):
        found.extend(Backup.objects.select_for_update().filter(parent=found[index]))
        index += 1
    return found


def keep_after_termination(server: Server) -> None:
    """Called when a server is terminated: its backups are kept for the grace period."""
    expires = timezone.now() + timedelta(days=settings.BACKUP_GRACE_DAYS)
    Backup.objects.filter(server=server, expires_at__isnull=True).update(expires_at=expires)


def verify_sample(*, count: int | None = None, older_than_days: int = 30) -> int:
    """Queue verification of the backups least recently verified (never first), up to
    `count` (BACKUP_VERIFY_SAMPLE) whose last check is older than `older_than_days`;
    a server busy with another job is skipped this time. Returns how many were queued."""
    count = settings.BACKUP_VERIFY_SAMPLE if count is None else count
    cutoff = timezone.now() - timedelta(days=older_than_days)
    candidates = (
        Backup.objects.complete()
        .filter(models.Q(verified_at__isnull=True) | models.Q(verified_at__lt=cutoff))
        .exclude(server__jobs__status__in=ACTIVE_JOB_STATUSES)
        .order_by(models.F("verified_at").asc(nulls_first=True), "created_at")
        .select_related("server")
    )
    queued = 0
    for backup in candidates[: count * 2]:
        if queued >= count:
            break
        try:
            request_verify(backup=backup, caller=Caller.system())
        except ServiceError:
            continue
        queued += 1
    return queued


def remove_backups(backups: list[Backup], *, reason: str) -> int:
    """Delete backups that nothing builds on (leaves of their chains), without a caller:
    Paddock's own doing (expiry, retention)."""
    store = get_store()
    count = 0
    for backup in backups:
        with transaction.atomic():
            doomed = _descendants(backup)
            keys = [object_key(b) for b in doomed]
            for b in reversed(doomed):
                b.delete()
            audit.record(
                action=f"backup.{reason}",
                target=backup.server,
                details={"backups": [str(b.uuid) for b in doomed]},
            )
        for key in keys:
            store.delete(key)
        count += len(doomed)
    return count


def purge_expired() -> int:
    """Remove the backups whose grace period is over (their server was terminated)."""
    expired = Backup.objects.filter(expires_at__lt=timezone.now(), parent__isnull=True)
    return remove_backups(list(expired.select_related("server")), reason="expire")


# --- the jobs -----------------------------------------------------------------------------
def _backup_of(ctx: JobContext, name: str = "backup") -> Backup:
    backup = (
        Backup.objects.select_related("server", "parent")
        .filter(pk=ctx.params.get(name) or 0)
        .first()
    )
    if backup is None:
        raise BackendError("The backup was deleted.")
    return backup


# the PostgreSQL advisory lock that makes claims on different hosts take turns, so that
# the count against BACKUPS_PER_STORE is right (SQLite's writes take turns anyway)
STORE_CLAIM_LOCK = 0x70646B_0001


def _claim_slot(ctx: JobContext, backup: Backup) -> None:
    """At most BACKUPS_PER_HOST running backups per host, and BACKUPS_PER_STORE writing to
    the store (0: no limit): mark this one running, or raise HostBusy (retried later)."""
    assert ctx.host is not None
    with transaction.atomic():
        ctx.require_lease()
        Host.objects.select_for_update().get(pk=ctx.host.pk)  # one claim at a time per host
        running = Backup.objects.filter(status=BackupStatus.RUNNING).exclude(pk=backup.pk)
        on_host = running.filter(server__host=ctx.host).count()
        if on_host >= settings.BACKUPS_PER_HOST:
            raise HostBusy(f"{on_host} backups run on this host already; waiting for a slot.")
        if settings.BACKUPS_PER_STORE > 0:
            connection = transaction.get_connection()
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STORE_CLAIM_LOCK])
            in_store = running.count()
            if in_store >= settings.BACKUPS_PER_STORE:
                raise HostBusy(
                    f"{in_store} backups write to the backup store already; waiting for a slot."
                )
        Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.RUNNING, error="")


def _backup_failed(ctx: JobContext, error: BaseException) -> None:
    backup = Backup.objects.filter(pk=ctx.params.get("backup") or 0).first()
    if backup is None or backup.status == BackupStatus.COMPLETE:
        return
    get_store().delete(object_key(backup))
    message = str(getattr(error, "message", error))[:500]
    Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.FAILED, error=message)


def manifest_for(backup: Backup, server: Server, disk: dict, consistency: str) -> dict:
    chain = backup.chain()
    return {
        "version": 1,
        "backup": str(backup.uuid),
        "kind": backup.kind,
        "chain": [str(b.uuid) for b in chain],
        "parent": str(backup.parent.uuid) if backup.parent else None,
        "server": {"uuid": str(server.uuid), "hostname": server.hostname},
        "plan": {
            "name": server.plan.name,
            "vcpus": server.plan.vcpus,
            "memory_mib": server.plan.memory_mib,
            "disk_gib": server.plan.disk_gib,
        },
        "image": {"name": server.image.name, "os_version": server.image.os_version},
        "addresses": [str(a.address) for a in server.addresses.all()],
        "consistency": consistency,
        "disks": [disk],
    }


@server_runner(JobKind.BACKUP, undo=_backup_failed, longest_step=120)
def backup(ctx: JobContext) -> str:
    server = ctx.server
    assert server is not None and server.host is not None
    record = _backup_of(ctx)
    _claim_slot(ctx, record)
    store = get_store()
    key = object_key(record)
    checkpoint = f"paddock-{record.uuid.hex[:12]}"
    since = record.parent.checkpoint if record.parent else None
    started = time.monotonic()
    totals = {"bytes": 0}

    def attempt(since: str | None):
        with store.put(key) as writer:

            def sink(chunk: bytes) -> None:
                writer.write(chunk)
                totals["bytes"] += len(chunk)

            result = ctx.backend.backup_disk(
                server.domain_name,
                checkpoint=checkpoint,
                since=since,
                sink=sink,
                progress=ctx.progress,
            )
            return result, writer.close()

    kind = "incremental" if since else "full"
    ctx.progress(2, f"Starting a {kind} backup")
    try:
        result, stored = attempt(since)
    except CheckpointMissing as exc:
        ctx.progress(3, f"{exc.message} Taking a full backup instead.")
        ctx.backend.forget_checkpoints(server.domain_name)
        with transaction.atomic():
            ctx.require_lease()
            Backup.objects.filter(pk=record.pk).update(kind=BackupKind.FULL, parent=None)
        record.kind, record.parent, totals["bytes"] = BackupKind.FULL, None, 0
        result, stored = attempt(None)
    seconds = max(time.monotonic() - started, 1e-6)
    disk = {
        "name": result.disk,
        "format": result.format,
        "virtual_bytes": result.virtual_bytes,
        "object": stored.as_dict(),
    }
    with transaction.atomic():
        ctx.require_lease()
        record.refresh_from_db()
        record.status = BackupStatus.COMPLETE
        record.consistency = result.consistency
        record.checkpoint = result.checkpoint
        record.manifest = manifest_for(record, server, disk, result.consistency)
        record.stored_bytes = stored.stored_size
        record.disk_bytes = result.virtual_bytes
        record.completed_at = timezone.now()
        record.save()
    ctx.result.update(
        backup=str(record.uuid),
        kind=record.kind,
        bytes_done=stored.size,
        bytes_total=stored.size,
        stored_bytes=stored.stored_size,
        seconds=round(seconds, 3),
        throughput_mib_s=round(stored.size / seconds / 2**20, 1),
    )
    return (
        f"{record.get_kind_display()} backup done: {stored.size} bytes read, "
        f"{stored.stored_size} stored ({result.consistency})"
    )


@server_runner(JobKind.BACKUP_VERIFY, on_failure=None, longest_step=120)
def verify(ctx: JobContext) -> str:
    record = _backup_of(ctx)
    store = get_store()
    chain = record.chain()
    problems = []
    checked = 0
    for index, link in enumerate(chain):
        ctx.progress(5 + 90 * index // len(chain), f"Reading backup {link.uuid}")
        for disk in link.manifest.get("disks", []):
            expected = disk["object"]
            try:
                got = store.verify(expected["key"])
            except StoreError as exc:
                problems.append(str(exc))
                continue
            if (got.sha256, got.size) != (expected["sha256"], expected["size"]):
                problems.append(f"{expected['key']}: differs from the manifest's checksum.")
            checked += 1
    with transaction.atomic():
        ctx.require_lease()
        Backup.objects.filter(pk=record.pk).update(
            verified_at=timezone.now(), verified_ok=not problems
        )
    ctx.result.update(checked=checked, problems=problems)
    if problems:
        raise BackendError("Verification failed: " + "; ".join(problems))
    return f"Verified: {checked} object(s), every checksum matches"


def _staging(ctx: JobContext) -> Path:
    return Path(settings.BACKUP_STAGING) / f"job-{ctx.job.pk}-{uuid_lib.uuid4().hex[:8]}"


def put_backup_disk(ctx: JobContext, record: Backup, *, base: int, span: int) -> None:
    """Rebuild the disk at `record` from its chain and make it the job's server's disk."""
    server = ctx.server
    assert server is not None
    chain = record.chain()
    keys = [d["object"]["key"] for b in chain for d in b.manifest.get("disks", [])[:1]]
    total = sum(d["object"]["size"] for b in chain for d in b.manifest.get("disks", [])[:1])
    done = {"bytes": 0, "at": 0.0}

    def fetched(count: int) -> None:
        done["bytes"] += count
        now = time.monotonic()
        if now - done["at"] > 1:
            done["at"] = now
            share = done["bytes"] / total if total else 1
            ctx.progress(
                base + int(span * 0.6 * share),
                f"Reading the backup: {done['bytes']} of {total} bytes",
            )

    workdir = _staging(ctx)
    try:
        ctx.progress(base, f"Rebuilding the disk from {len(chain)} backup(s)")
        disks = chain[-1].manifest.get("disks", [])
        form = disks[0].get("format", "qcow2") if disks else "qcow2"
        flat = images.assemble(get_store(), keys, workdir, fetched, format=form)
        ctx.progress(base + int(span * 0.7), "Uploading the disk to the host")
        ctx.backend.replace_disk(server.domain_name, source_path=str(flat))
    except StoreError as exc:
        raise BackendError(str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ctx.result.update(bytes_done=total, bytes_total=total, backup=str(record.uuid))


@server_runner(JobKind.BACKUP_RESTORE, longest_step=120)
def restore(ctx: JobContext) -> str:
    server = ctx.server
    assert server is not None
    record = _backup_of(ctx)
    put_backup_disk(ctx, record, base=5, span=90)
    with transaction.atomic():
        ctx.require_lease()
        Snapshot.objects.filter(server=server).delete()  # their layers went with the disk
        restart_backup_chain(server)
    ctx.set_state(ServerState.STOPPED)
    return f"Restored from the backup of {record.created_at:%Y-%m-%d %H:%M} UTC; start the server"
