"""Moving a server to another host: the request (pre-checks from the database, a target
chosen when none is given), the job's runner (the hypervisors' pre-checks, the move, the
bookkeeping) and cancelling it.

The checks come in two rounds, each with a reason for every refusal:
- when it is asked (`migration_refusals`, no hypervisor contacted: the web process never
  waits on one): a different host, the capability to migrate on both, and placement's
  rules (online, not in maintenance, backend, kind, zone, the server's network and pool
  in its inventory, affinity, room after the move). The target's room is then held
  (`placement.reserve_target`; placement chooses the target when none is named) until
  the move is recorded (`complete_move`) or given up (`release_target`);
- in the job, before anything moves (`Backend.check_migration`): the guest's networks and
  pools on the target, storage shared or copied, CPU compatibility, hypervisor versions.

On success the server's `host` is the target: its addresses (rows of the server), console
(read from its host), live stats (collected per host) and usage counters (rows per
server) follow it. The customer sees the state "migrating" while it moves, then the state
it had; nothing else about their server changes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from ..access import Caller
from ..actions import IllegalAction, get_action, refusal, require_permitted
from ..backends import (
    BackendError,
    Capability,
    MigrationTuning,
    PowerState,
    backend_capabilities,
    capabilities_of,
)
from ..choices import JobKind, JobStatus, ServerState
from ..models import Host, Job, Server
from ..permissions import caller_may
from ..runners import JobContext
from . import audit, placement
from .errors import Conflict, NotPermitted
from .events import publish_server
from .jobs import create_job, finish
from .operations import OBSERVED, power_off, record_failure, server_runner
from .servers import lock_server, set_state

log = logging.getLogger(__name__)

# the job params a caller may set, over the settings' defaults
TUNING_PARAMS = ("bandwidth_mib_s", "downtime_ms", "postcopy", "timeout_s")


# --- the checks that need no hypervisor ------------------------------------------------------


def _capability_problems(hosts: list[Host], live: bool) -> list[str]:
    needed = Capability.LIVE_MIGRATION if live else Capability.OFFLINE_MIGRATION
    problems = []
    for host in hosts:
        try:
            capable = needed in backend_capabilities(host)
        except BackendError:
            capable = False
        if not capable:
            problems.append(f"Host {host.name}'s hypervisor cannot do {needed.label}.")
    return problems


def migration_refusals(*, server: Server, target: Host, live: bool) -> list[str]:
    """Why `server` cannot move to `target` as far as the database knows; [] if none.
    Placement's rules (`placement.check_host`: online, not in maintenance, kind, backend,
    zone, network and pool in the target's inventory, affinity, room after the move) and
    the capability to migrate on both hosts."""
    source = server.host
    if source is None:
        return ["The server has no host."]
    if target.pk == source.pk:
        return [f"Host {target.name} is the server's own host."]
    problems = _capability_problems([source, target], live)
    reasons = placement.check_host(server, target)
    if reasons:
        problems.append(f"Host {target.name} cannot take it: {'; '.join(reasons)}.")
    return problems


# --- the request ---------------------------------------------------------------------------


def require_may_migrate(*, server: Server, caller: Caller) -> None:
    """The caller may ask to move this server at all (before any input is read: a
    customer learns nothing about hosts)."""
    entry = get_action(JobKind.MIGRATE)
    access = caller.access
    if not access.can_write or not access.allows_customer(server.customer_id):
        raise NotPermitted(f"You cannot {entry.verb} this server.")
    require_permitted(entry, provider=caller.is_provider)
    if not caller_may(caller, entry.kind):
        raise NotPermitted(f"You may not {entry.verb} servers.")


def request_migration(
    *,
    server: Server,
    caller: Caller,
    target: Host | None = None,
    live: bool | None = None,
    tuning: dict[str, Any] | None = None,
) -> Job:
    """Queue the move of `server` to `target` (chosen when None): live when it runs
    (unless `live` says otherwise), offline when it is stopped. Refused with the reasons
    when a check fails."""
    require_may_migrate(server=server, caller=caller)
    entry = get_action(JobKind.MIGRATE)
    with transaction.atomic():
        locked = lock_server(server.pk)
        reason = refusal(
            entry, state=locked.state, suspended=locked.suspended, provider=caller.is_provider
        )
        if reason:
            raise IllegalAction(reason)
        running = locked.state in (ServerState.RUNNING, ServerState.PAUSED)
        # a running guest whose host cannot move it live (a container) is stopped, moved
        # offline and started again on the target
        can = (capabilities_of(locked.host) if locked.host else None) or frozenset()
        restart = (
            running
            and not live
            and Capability.LIVE_MIGRATION not in can
            and Capability.OFFLINE_MIGRATION in can
        )
        if live is None:
            live = running and not restart
        if live and not running:
            raise Conflict(f"A {locked.state} server cannot move live: migrate it offline.")
        if not live and running and not restart:
            raise Conflict("A running server moves live: stop it first to move it offline.")
        # the target's room is held (placement's counters) until the move is recorded
        # or given up: concurrent orders and moves cannot take it meanwhile
        if target is not None:
            problems = migration_refusals(server=locked, target=target, live=live)
            if problems:
                raise Conflict(" ".join(problems), field="target_host")
            target = placement.reserve_target(locked, host=target)
        else:
            problems = _capability_problems([locked.host], live) if locked.host else []
            if problems:
                raise Conflict(" ".join(problems))
            target = placement.reserve_target(locked)
            problems = _capability_problems([target], live)
            if problems:  # the transaction rolls the reservation back
                raise Conflict(" ".join(problems), field="target_host")
        params: dict[str, Any] = {"live": live, "from_state": locked.state}
        if restart:  # stopped, moved and started again (hosts that cannot move it live)
            params["restart"] = True
        params.update({k: v for k, v in (tuning or {}).items() if k in TUNING_PARAMS})
        job = create_job(
            kind=JobKind.MIGRATE, server=locked, target_host=target, params=params, caller=caller
        )
        audit.record(
            action="server.migrate",
            caller=caller,
            target=locked,
            details={
                "job": job.pk,
                "source": locked.host.name if locked.host else None,
                "target": target.name,
                "live": live,
            },
        )
    return job


def request_cancel(*, job: Job, caller: Caller) -> Job:
    """Stop a migration: a queued one is cancelled at once (the room held on its target
    freed), a running one is aborted by its worker (the guest stays on its host); a
    cancelled one stays so (asking twice is harmless). Other jobs run to their end (a
    cancelled terminate would leave its server half-removed). Provider only."""
    if not caller.is_provider or not caller_may(caller, job.kind):
        raise NotPermitted("Only the provider can cancel jobs.")
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.kind != JobKind.MIGRATE:
            raise Conflict("Only a migration can be cancelled.")
        if locked.status == JobStatus.CANCELLED:
            return locked
        if locked.status == JobStatus.QUEUED:
            finish(locked, status=JobStatus.CANCELLED, message="Cancelled before it started")
            if locked.server is not None:
                placement.release_target(locked.server)
        elif locked.status == JobStatus.RUNNING:
            locked.cancel_requested = True
            locked.save(update_fields=["cancel_requested"])
        else:
            raise Conflict(f"The job is {locked.status} already.")
        audit.record(
            action="job.cancel",
            caller=caller,
            target=locked.server,
            details={"job": locked.pk, "kind": locked.kind},
        )
    locked.refresh_from_db()
    return locked


# --- the job -------------------------------------------------------------------------------


def tuning_for(params: dict[str, Any]) -> MigrationTuning:
    return MigrationTuning(
        bandwidth_mib_s=int(params.get("bandwidth_mib_s") or settings.MIGRATION_BANDWIDTH_MIB_S),
        downtime_ms=int(params.get("downtime_ms") or settings.MIGRATION_DOWNTIME_MS),
        escalate_after_s=settings.MIGRATION_ESCALATE_AFTER,
        escalate_every_s=settings.MIGRATION_ESCALATE_EVERY,
        max_downtime_ms=settings.MIGRATION_MAX_DOWNTIME_MS,
        auto_converge=settings.MIGRATION_AUTO_CONVERGE,
        postcopy=bool(params.get("postcopy", settings.MIGRATION_POSTCOPY)),
        timeout_s=float(params.get("timeout_s") or settings.MIGRATION_TIMEOUT),
    )


def _cancel_check(job: Job):
    def should_cancel() -> bool:
        return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()

    return should_cancel


def _record_move(ctx: JobContext, state: str, message: str = "") -> Server:
    """The server lives on the target host now, in `state`; its room moves with it."""
    assert ctx.server is not None and ctx.target_host is not None
    ctx.check_lease()
    with transaction.atomic():
        ctx.require_lease()
        locked = lock_server(ctx.server.pk)
        if locked.host_id != ctx.target_host.pk:
            if locked.reserved_host_id != ctx.target_host.pk:
                # no room held there (released meanwhile): hold it now, the guest is there
                placement.release_target(locked)
                placement.shift(ctx.target_host.pk, placement.Demand.of(locked.plan), +1)
                locked.reserved_host = ctx.target_host
                locked.save(update_fields=["reserved_host", "updated_at"])
            placement.complete_move(locked)
        set_state(locked, state, message)
    ctx.server = locked
    return locked


def _observed(backend, name: str) -> str:
    return OBSERVED.get(backend.state(name), ServerState.ERROR)


def _after_failure(ctx: JobContext, error: BaseException) -> None:
    """The server takes the state its guest has where it is: on the source (the move
    failed, and the backend left nothing on the target) or, should the move have gone
    through after all, on the target."""
    server, target = ctx.server, ctx.target_host
    if server is None:
        return
    name = server.domain_name
    try:
        on_source = ctx.backend.state(name) if server.host else PowerState.MISSING
        on_target = ctx.target_backend.state(name) if target else PowerState.MISSING
    except BackendError:
        on_source = on_target = PowerState.OTHER
    if on_source == PowerState.MISSING and on_target not in (PowerState.MISSING, PowerState.OTHER):
        _record_move(ctx, OBSERVED.get(on_target, ServerState.ERROR), "Moved, then failed")
    else:
        placement.release_target(server)  # the room held on the target
        from_state = ctx.params.get("from_state")
        if OBSERVED.get(on_source) == from_state and from_state:
            with transaction.atomic():
                ctx.require_lease()
                locked = lock_server(server.pk)
                set_state(locked, from_state, str(getattr(error, "message", error))[:500])
                publish_server(locked)
        else:
            record_failure(ctx, error)
    audit.record(
        action="server.migrate_failed",
        target=server,
        details={
            "job": ctx.job.pk,
            "target": target.name if target else None,
            "error": str(getattr(error, "message", error)),
        },
    )


@server_runner(JobKind.MIGRATE, longest_step=120, retry_transient=False, on_failure=_after_failure)
def migrate(ctx: JobContext) -> str:
    server, target = ctx.server, ctx.target_host
    assert server is not None and server.host is not None
    if target is None:
        raise BackendError("The migration has no target host.")
    name, live = server.domain_name, bool(ctx.params.get("live", True))
    if server.host_id == target.pk:
        return f"The server is on {target.name} already"
    source_backend, target_backend = ctx.backend, ctx.target_backend
    if (
        source_backend.state(name) == PowerState.MISSING
        and target_backend.state(name) != PowerState.MISSING
    ):  # a worker that took over after the move itself was done
        _record_move(ctx, _observed(target_backend, name))
        return f"The server had moved to {target.name} already"
    ctx.set_state(ServerState.MIGRATING)
    restart = bool(ctx.params.get("restart")) and not live
    if restart and source_backend.state(name) != PowerState.STOPPED:
        ctx.progress(1, "Stopping the server to move it")
        power_off(ctx)
    ctx.progress(2, f"Checking {target.name}")
    problems = source_backend.check_migration(name, target_backend, live=live)
    if problems:
        raise BackendError("Refused by the pre-checks: " + " ".join(problems))
    result = source_backend.migrate(
        name,
        target_backend,
        live=live,
        tuning=tuning_for(ctx.params),
        progress=ctx.progress,
        should_cancel=_cancel_check(ctx.job),
    )
    ctx.result.update(result.as_dict(), source=server.host.name, target=target.name)
    if restart:
        ctx.progress(97, f"Starting the server on {target.name}")
        target_backend.start(name)
    state = _observed(target_backend, name) if live or restart else ServerState.STOPPED
    _record_move(ctx, state)
    audit.record(
        action="server.migrated",
        target=ctx.server,
        details={"job": ctx.job.pk, **ctx.result},
    )
    if live:
        return (
            f"Moved live to {target.name} in {result.total_seconds:.1f} s, "
            f"downtime {result.downtime_ms} ms"
        )
    if restart:
        return f"Stopped, moved to {target.name} and started in {result.total_seconds:.1f} s"
    return f"Moved offline to {target.name} in {result.total_seconds:.1f} s"
