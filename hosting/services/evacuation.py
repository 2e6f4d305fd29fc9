"""Emptying a host for maintenance: one parent job (kind `evacuate`) that moves every
server off the host, each placed by the engine (`request_migration` with no target):
running ones live, stopped ones offline.

The parent job never waits in a worker: each run of it looks at the migrations it asked
for, asks for more while fewer than EVACUATE_PARALLEL run, records all of it in its
`result`, and is queued again (`runners.Again`) until every server is moved or has
failed. Its progress is the share of the host's servers moved; a server that cannot move
(no room, pinned, anti-affinity, its migration failed) is reported with its reason and
the others carry on. Leaving maintenance stops it from asking for more moves.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from ..access import Caller
from ..backends import BackendError
from ..choices import ACTIVE_JOB_STATUSES, JobKind, JobStatus, ServerState
from ..models import Host, Job, Server
from ..permissions import HOST_MAINTENANCE, caller_may
from ..runners import Again, JobContext, runner
from . import audit, placement
from .errors import Conflict, NoCapacity, NotPermitted, ServiceError
from .hosts import set_maintenance
from .jobs import create_job
from .migration import request_migration

# states whose servers an evacuation moves (terminated ones hold nothing)
LEFT_BEHIND = (ServerState.TERMINATED,)


def request_evacuation(*, host: Host, caller: Caller, reason: str = "") -> Job:
    """Put `host` into maintenance (if it is not) and queue the job that moves every one
    of its servers away. Needs the hosting.maintain_host permission; audited."""
    if not caller_may(caller, HOST_MAINTENANCE):
        raise NotPermitted("You may not evacuate a host.")
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        if Job.objects.filter(
            kind=JobKind.EVACUATE, host=locked, status__in=ACTIVE_JOB_STATUSES
        ).exists():
            raise Conflict(f"Host {locked.name} is being evacuated already.")
        locked = set_maintenance(host=locked, on=True, reason=reason or "evacuation", caller=caller)
        job = create_job(kind=JobKind.EVACUATE, host=locked, caller=caller)
        audit.record(
            action="host.evacuate",
            caller=caller,
            target=locked,
            details={"job": job.pk, "servers": _servers_on(locked).count()},
        )
    return job


def _servers_on(host: Host):
    return Server.objects.filter(host=host).exclude(state__in=LEFT_BEHIND)


def _summary(result: dict[str, Any]) -> str:
    moved, failed, total = len(result["moved"]), len(result["failed"]), result["total"]
    text = f"{moved} of {total} server(s) moved"
    if failed:
        text += f", {failed} could not move"
    if result["running"]:
        text += f", {len(result['running'])} moving"
    return text


def _look_at_moves(result: dict[str, Any], host: Host) -> None:
    """Record the migrations that ended since the last run."""
    running: dict[str, int] = result["running"]
    jobs = Job.objects.in_bulk([int(j) for j in running.values()])
    for sid, job_id in list(running.items()):
        job = jobs.get(job_id)
        if job is not None and job.status in ACTIVE_JOB_STATUSES:
            continue
        del running[sid]
        server = Server.objects.filter(pk=int(sid)).only("host_id", "hostname").first()
        name = server.hostname if server else f"#{sid}"
        if server is None or server.host_id != host.pk:
            result["moved"][sid] = {"server": name, "job": job_id}
        else:
            error = job.error if job is not None else "its migration job was deleted"
            status = job.status if job is not None else JobStatus.FAILED
            result["failed"][sid] = {
                "server": name,
                "job": job_id,
                "error": f"migration {status}: {error}".strip(": "),
            }


def why_not(server: Server, most: int = 3) -> str:
    """Placement's reasons why the first few other hosts cannot take `server`."""
    verdicts = [
        v
        for v in placement.evaluate(placement.PlacementRequest.for_server(server))
        if not v.eligible and v.host.pk != server.host_id
    ]
    return " ".join(f"{v.host.name}: {'; '.join(v.reasons)}." for v in verdicts[:most])


def _ask_for_moves(result: dict[str, Any], host: Host) -> None:
    """Request migrations (target chosen by placement) while fewer than the limit run."""
    pending: list[int] = result["pending"]
    while pending and len(result["running"]) < settings.EVACUATE_PARALLEL:
        sid = pending.pop(0)
        server = Server.objects.select_related("host", "plan").filter(pk=sid).first()
        if server is None or server.host_id != host.pk or server.state in LEFT_BEHIND:
            result["moved"][str(sid)] = {"server": server.hostname if server else f"#{sid}"}
            continue
        try:
            job = request_migration(server=server, caller=Caller.system())
        except NoCapacity as exc:
            result["failed"][str(sid)] = {
                "server": server.hostname,
                "error": f"{exc.message} {why_not(server)}".strip(),
            }
            continue
        except ServiceError as exc:
            result["failed"][str(sid)] = {"server": server.hostname, "error": exc.message}
            continue
        result["running"][str(sid)] = job.pk


@runner(JobKind.EVACUATE, subject="host", longest_step=30, retry_transient=False)
def evacuate(ctx: JobContext) -> str:
    host = ctx.host
    assert host is not None
    result = ctx.result
    if "total" not in result:
        ids = list(_servers_on(host).order_by("pk").values_list("pk", flat=True))
        result.update(total=len(ids), pending=ids, running={}, moved={}, failed={})
    _look_at_moves(result, host)
    host.refresh_from_db(fields=["maintenance"])
    if not host.maintenance and result["pending"]:
        for sid in result["pending"]:
            result["failed"][str(sid)] = {"error": "not moved: the host left maintenance"}
        result["pending"] = []
    _ask_for_moves(result, host)
    total = result["total"] or 1
    percent = min(99, len(result["moved"]) * 100 // total) if result["total"] else 99
    summary = _summary(result)
    ctx.progress(percent, summary)
    if result["pending"] or result["running"]:
        raise Again(settings.EVACUATE_POLL, summary)
    audit.record(
        action="host.evacuated",
        target=host,
        details={
            "job": ctx.job.pk,
            "moved": len(result["moved"]),
            "failed": {v.get("server", k): v["error"] for k, v in result["failed"].items()},
        },
    )
    if result["failed"]:
        reasons = "; ".join(
            f"{v.get('server', k)}: {v['error']}" for k, v in result["failed"].items()
        )
        # the job fails, with every server's reason (and each in its result)
        raise BackendError(f"{summary}. Not moved: {reasons}")
    return f"Host {host.name} is empty: {summary}"
