"""Snapshots of a server: take, revert, delete (requests and the jobs that do them).

A request checks the caller, the action registry (state, suspension, the backend's
`snapshots` capability), the plan's `snapshot_slots`, writes the row and the audit event
and queues the job; the runner does the hypervisor's part through the backend
(hosting/backends/libvirt_disks.py says how snapshots are kept on each kind of host).
A revert restarts the server's backup chain: the checkpoints of its incrementals were
on the layers the revert removed.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from ..access import Caller
from ..actions import get_action, refuse
from ..backends import Capability, capabilities_of
from ..choices import JobKind, ServerState, SnapshotStatus
from ..models import Job, Server, Snapshot
from ..permissions import caller_may
from ..runners import JobContext
from . import audit
from .errors import Conflict, NotPermitted, ServiceError
from .jobs import create_job
from .operations import server_runner
from .servers import lock_server

NAME_MAX = 64


def _check_caller(server: Server, kind: str, caller: Caller) -> None:
    entry = get_action(kind)
    access = caller.access
    if not access.can_write or not access.allows_customer(server.customer_id):
        raise NotPermitted(f"You cannot {entry.verb} on this server.")
    if not caller_may(caller, kind):
        raise NotPermitted(f"You may not {entry.verb}.")


def request_snapshot(
    *, server: Server, name: str, description: str = "", with_memory: bool = False, caller: Caller
) -> tuple[Snapshot, Job]:
    """Queue a snapshot of `server`, within its plan's snapshot slots."""
    _check_caller(server, JobKind.SNAPSHOT_CREATE, caller)
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ServiceError(f"Give the snapshot a name of 1 to {NAME_MAX} characters.", field="name")
    with transaction.atomic():
        locked = lock_server(server.pk)
        refuse(get_action(JobKind.SNAPSHOT_CREATE), locked, provider=caller.is_provider)
        if with_memory and locked.state != ServerState.RUNNING:
            raise ServiceError("Only a running server has memory to snapshot.", field="with_memory")
        can = (capabilities_of(locked.host) if locked.host else None) or frozenset()
        if with_memory and Capability.MEMORY_SNAPSHOTS not in can:
            raise ServiceError(
                "This server takes disk snapshots only (no memory state).", field="with_memory"
            )
        slots = locked.plan.snapshot_slots
        if locked.snapshots.counted().count() >= slots:
            raise Conflict(
                f"All {slots} snapshot slot(s) of the plan are in use: delete a snapshot first."
            )
        try:
            with transaction.atomic():
                snapshot = Snapshot.objects.create(
                    server=locked,
                    name=name,
                    description=description.strip()[:500],
                    with_memory=with_memory,
                )
        except IntegrityError:
            raise ServiceError("This server has a snapshot of that name.", field="name") from None
        job = create_job(
            kind=JobKind.SNAPSHOT_CREATE,
            server=locked,
            params={"snapshot": snapshot.pk},
            caller=caller,
        )
        audit.record(
            action="snapshot.create",
            caller=caller,
            target=locked,
            details={"snapshot": name, "memory": with_memory, "job": job.pk},
        )
    return snapshot, job


def _request_on_snapshot(*, snapshot: Snapshot, kind: str, status: str, caller: Caller) -> Job:
    server = snapshot.server
    _check_caller(server, kind, caller)
    with transaction.atomic():
        locked = lock_server(server.pk)
        refuse(get_action(kind), locked, provider=caller.is_provider)
        snap = Snapshot.objects.select_for_update().get(pk=snapshot.pk)
        if snap.status not in (SnapshotStatus.READY, SnapshotStatus.ERROR):
            raise Conflict(f"The snapshot is {snap.get_status_display().lower()}.")
        if kind == JobKind.SNAPSHOT_REVERT and snap.status != SnapshotStatus.READY:
            raise Conflict("Only a ready snapshot can be reverted to.")
        job = create_job(kind=kind, server=locked, params={"snapshot": snap.pk}, caller=caller)
        snap.status = status
        snap.save(update_fields=["status"])
        audit.record(
            action=f"snapshot.{kind.removeprefix('snapshot_')}",
            caller=caller,
            target=locked,
            details={"snapshot": snap.name, "job": job.pk},
        )
    return job


def request_revert(*, snapshot: Snapshot, caller: Caller) -> Job:
    return _request_on_snapshot(
        snapshot=snapshot,
        kind=JobKind.SNAPSHOT_REVERT,
        status=SnapshotStatus.REVERTING,
        caller=caller,
    )


def request_delete(*, snapshot: Snapshot, caller: Caller) -> Job:
    return _request_on_snapshot(
        snapshot=snapshot,
        kind=JobKind.SNAPSHOT_DELETE,
        status=SnapshotStatus.DELETING,
        caller=caller,
    )


# --- the jobs -----------------------------------------------------------------------------
def _snapshot(ctx: JobContext) -> Snapshot | None:
    return Snapshot.objects.filter(pk=ctx.params.get("snapshot") or 0).first()


def _mark(ctx: JobContext, snapshot: Snapshot, status: str, error: str = "") -> None:
    with transaction.atomic():
        ctx.require_lease()
        Snapshot.objects.filter(pk=snapshot.pk).update(status=status, error=error[:500])


def _after_failure(ctx: JobContext, error: BaseException) -> None:
    snapshot = _snapshot(ctx)
    if snapshot is None:
        return
    message = str(getattr(error, "message", error))
    if ctx.job.kind == JobKind.SNAPSHOT_CREATE:
        status = SnapshotStatus.ERROR
    else:
        status = SnapshotStatus.READY  # the snapshot is still there; the job failed
    with transaction.atomic():
        ctx.require_lease()
        Snapshot.objects.filter(pk=snapshot.pk).update(status=status, error=message[:500])


def restart_backup_chain(server: Server) -> None:
    """The next backup of `server` is a full one (its checkpoints are gone)."""
    from ..models import Backup

    Backup.objects.filter(server=server).exclude(checkpoint="").update(checkpoint="")


@server_runner(JobKind.SNAPSHOT_CREATE, undo=_after_failure, longest_step=120)
def create(ctx: JobContext) -> str:
    server, snapshot = ctx.server, _snapshot(ctx)
    assert server is not None
    if snapshot is None:
        return "The snapshot was deleted meanwhile"
    what = "disk and memory" if snapshot.with_memory else "disk"
    ctx.progress(30, f"Taking a snapshot of the {what}")
    ctx.backend.create_snapshot(
        server.domain_name,
        snapshot.key,
        description=snapshot.description,
        with_memory=snapshot.with_memory,
    )
    _mark(ctx, snapshot, SnapshotStatus.READY)
    return f"Snapshot {snapshot.name} taken"


@server_runner(JobKind.SNAPSHOT_REVERT, undo=_after_failure, longest_step=120)
def revert(ctx: JobContext) -> str:
    server, snapshot = ctx.server, _snapshot(ctx)
    assert server is not None
    if snapshot is None:
        raise ServiceError("The snapshot is gone.")
    ctx.progress(30, f"Reverting to {snapshot.name}")
    ctx.backend.revert_snapshot(server.domain_name, snapshot.key, with_memory=snapshot.with_memory)
    with transaction.atomic():
        ctx.require_lease()
        # the snapshots taken after this one branched off a past that is gone
        later = Snapshot.objects.filter(server=server, created_at__gt=snapshot.created_at)
        dropped = later.count()
        later.delete()
        Snapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.READY, error="")
        restart_backup_chain(server)
    running = snapshot.with_memory
    ctx.set_state(ServerState.RUNNING if running else ServerState.STOPPED)
    tail = f"; {dropped} later snapshot(s) removed" if dropped else ""
    return f"Reverted to {snapshot.name}" + (" (running)" if running else "") + tail


@server_runner(JobKind.SNAPSHOT_DELETE, undo=_after_failure, longest_step=120)
def delete(ctx: JobContext) -> str:
    server, snapshot = ctx.server, _snapshot(ctx)
    assert server is not None
    if snapshot is None:
        return "The snapshot was gone already"
    ctx.progress(30, f"Merging {snapshot.name} into the disk")
    ctx.backend.delete_snapshot(server.domain_name, snapshot.key)
    with transaction.atomic():
        ctx.require_lease()
        Snapshot.objects.filter(pk=snapshot.pk).delete()
    return f"Snapshot {snapshot.name} deleted"
