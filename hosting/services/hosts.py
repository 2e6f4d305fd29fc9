"""Hosts: onboarding (one service for the API, the admin, the seed and the testbed) and
reading a host's inventory from its hypervisor (the host refresh job's runner)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..access import Caller
from ..backends import BackendError, HostUnreachable, get_backend
from ..choices import HostState, JobKind
from ..models import Host, Job
from ..permissions import HOST_MAINTENANCE, caller_may
from ..runners import JobContext, runner
from ..validators import host_uri_problem
from . import audit
from .errors import NotPermitted, database_errors_are_transient
from .jobs import create_job

# Fields an admin sets on a host; the rest is read from the hypervisor.
HOST_FIELDS = (
    "libvirt_uri",
    "backend",
    "kind",
    "state",
    "zone",
    "storage_pool",
    "shared_pools",
    "migration_address",
    "network",
    "queue",
    "disk_mode",
    "virt_type",
    "cpu_overcommit",
    "ram_overcommit",
)


def onboard_host(
    *, caller: Caller, name: str, read_now: bool = False, **fields: Any
) -> tuple[Host, Job | None]:
    """Add a host (or update the one of that name), audit it, and read its inventory.

    `read_now` reads it in this process (management commands: the seed, the testbed) and
    raises BackendError when the hypervisor cannot be read; otherwise a worker on the
    host's queue reads it (a job is returned). Nothing is connected to before the host's
    fields pass validation.
    """
    unknown = set(fields) - set(HOST_FIELDS)
    if unknown:
        raise TypeError(f"onboard_host() got unknown fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(name=name).first()
        created = host is None
        if host is None:
            host = Host(name=name)
        for key, value in fields.items():
            setattr(host, key, value)
        host.full_clean()
        host.save()
        audit.record(
            action="host.create" if created else "host.update",
            caller=caller,
            target=host,
            details={"fields": sorted(fields)},
        )
        job = None if read_now else request_refresh(host=host, caller=caller, audited=False)
    if read_now:
        host = refresh_host(host=host)
    return host, job


def refresh_host(*, host: Host, ctx: JobContext | None = None) -> Host:
    """Read capacity, CPU model and version from the hypervisor; mark the host online.

    An unreachable host goes offline with the reason stored for the admin. A host that
    does not answer (HostUnreachable) and a database that is busy (DatabaseBusy) are
    transient errors: the job runner retries them with backoff.
    """
    with database_errors_are_transient():
        return _refresh(host=host, ctx=ctx)


def _refresh(*, host: Host, ctx: JobContext | None) -> Host:
    if problem := host_uri_problem(host.libvirt_uri, host.backend):  # before anything opens
        message = f"Refused host URI: {problem}"
        Host.objects.filter(pk=host.pk).update(state=HostState.OFFLINE, last_error=message)
        raise BackendError(message)
    if ctx is not None:
        ctx.progress(20, f"Connecting to {host.libvirt_uri}")
    try:
        info = get_backend(host).host_info()
    except HostUnreachable as exc:
        Host.objects.filter(pk=host.pk).update(state=HostState.OFFLINE, last_error=exc.message)
        raise
    except BackendError as exc:
        Host.objects.filter(pk=host.pk).update(last_error=exc.message)
        raise
    if host.network not in info.networks:
        message = (
            f"Network {host.network!r} is not defined on {host.libvirt_uri} "
            f"(it has: {', '.join(info.networks) or 'none'})."
        )
        Host.objects.filter(pk=host.pk).update(state=HostState.OFFLINE, last_error=message)
        raise BackendError(message)
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        locked.cpus = info.cpus
        locked.memory_mib = info.memory_mib
        locked.disk_gib = info.disk_gib
        locked.cpu_model = info.cpu_model
        locked.hypervisor_version = info.hypervisor_version
        locked.libvirt_version = info.libvirt_version
        locked.networks = list(info.networks)
        locked.storage_pools = list(info.pools)
        locked.detected_virt_type = info.virt_type
        locked.last_seen = timezone.now()
        locked.last_error = ""
        if locked.state == HostState.OFFLINE:
            locked.state = HostState.ONLINE
        locked.save()
    return locked


@runner(JobKind.HOST_REFRESH, subject="host", longest_step=30)
def run_refresh(ctx: JobContext) -> str:
    assert ctx.host is not None
    host = refresh_host(host=ctx.host, ctx=ctx)
    ctx.result.update(cpus=host.cpus, memory_mib=host.memory_mib, disk_gib=host.disk_gib)
    return f"Host {host} refreshed"


def request_refresh(*, host: Host, caller: Caller, audited: bool = True) -> Job:
    with transaction.atomic():
        job = create_job(kind=JobKind.HOST_REFRESH, host=host, caller=caller)
        if audited:
            audit.record(action="host.refresh", caller=caller, target=host, details={"job": job.pk})
    return job


def set_maintenance(*, host: Host, on: bool, reason: str = "", caller: Caller) -> Host:
    """Put a host into maintenance (no new placements, no moves to it) or take it out;
    audited. Needs the hosting.maintain_host permission (a staff session; the system).
    Moving its servers away (evacuation) is a separate job."""
    if not caller_may(caller, HOST_MAINTENANCE):
        raise NotPermitted("You may not change a host's maintenance.")
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        if locked.maintenance == on:
            return locked
        locked.maintenance = on
        locked.maintenance_since = timezone.now() if on else None
        locked.maintenance_reason = reason[:300] if on else ""
        locked.save(update_fields=["maintenance", "maintenance_since", "maintenance_reason"])
        audit.record(
            action="host.maintenance.enter" if on else "host.maintenance.leave",
            caller=caller,
            target=locked,
            details={"reason": reason} if on else {},
        )
    return locked
