from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..backends import BackendError, HostUnreachable, get_backend
from ..choices import HostState, JobKind
from ..models import Host, Job
from . import audit
from .jobs import create_job, update_progress


def refresh_host(*, host: Host, job: Job | None = None) -> Host:
    """Read capacity, CPU model and version from the hypervisor; mark the host online.

    An unreachable host goes offline with the reason stored for the admin.
    """
    if job is not None:
        update_progress(job, 20, f"Connecting to {host.libvirt_uri}")
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
        locked.last_seen = timezone.now()
        locked.last_error = ""
        if locked.state == HostState.OFFLINE:
            locked.state = HostState.ONLINE
        locked.save()
    return locked


def request_refresh(*, host: Host, requested_by: Any = None, request: Any = None) -> Job:
    with transaction.atomic():
        job = create_job(kind=JobKind.HOST_REFRESH, host=host, requested_by=requested_by)
        audit.record(
            action="host.refresh",
            request=request,
            actor=requested_by,
            target=host,
            details={"job": job.pk},
        )
    return job
