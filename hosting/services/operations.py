"""What a worker does for each kind of job. Every step is safe to run twice.

`execute(job)` is called by the Celery task with a job that has been marked running; it
returns the final message or raises. Hypervisor access goes through hosting.backends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..backends import Backend, BackendError, DomainSpec, PowerState, get_backend
from ..choices import DiskMode, JobKind, ServerState
from ..models import Job, Server
from . import ipam
from .cloudinit import seed_files, seed_iso
from .jobs import update_progress
from .servers import lock_server, set_state

log = logging.getLogger(__name__)

GIB = 1024**3
POLL_INTERVAL = 0.5

OBSERVED = {
    PowerState.RUNNING: ServerState.RUNNING,
    PowerState.STOPPED: ServerState.STOPPED,
    PowerState.PAUSED: ServerState.PAUSED,
    PowerState.CRASHED: ServerState.ERROR,
    PowerState.MISSING: ServerState.ERROR,
}


def disk_volume(server: Server) -> str:
    return f"{server.domain_name}-disk0.qcow2"


def seed_volume(server: Server) -> str:
    return f"{server.domain_name}-seed.iso"


def server_volumes(server: Server) -> list[str]:
    return [disk_volume(server), seed_volume(server)]


def domain_spec(server: Server) -> DomainSpec:
    assert server.host is not None
    return DomainSpec(
        name=server.domain_name,
        uuid=str(server.uuid),
        vcpus=server.plan.vcpus,
        memory_mib=server.plan.memory_mib,
        disk_volume=disk_volume(server),
        seed_volume=seed_volume(server) if server.image.cloud_init else None,
        mac_address=server.mac_address,
        network=server.host.network,
        virt_type=settings.VIRT_TYPE,
        memory_hard_limit=settings.MEMORY_HARD_LIMIT,
        metadata={"hostname": server.hostname, "customer": str(server.customer_id)},
    )


def wait_for(backend: Backend, name: str, wanted: set[PowerState], timeout: float) -> PowerState:
    deadline = time.monotonic() + timeout
    while True:
        state = backend.state(name)
        if state in wanted or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_INTERVAL)


def _set(server_id: int, state: str, message: str = "") -> Server:
    with transaction.atomic():
        server = lock_server(server_id)
        set_state(server, state, message)
    return server


def provision(job: Job, server: Server, backend: Backend) -> str:
    _set(server.pk, ServerState.PROVISIONING)
    image = server.image
    host_name = server.host.name if server.host else "?"
    update_progress(job, 10, f"Preparing image {image.name} on {host_name}")
    source = str(Path(settings.IMAGE_STORE) / image.source) if image.source else None
    backend.ensure_image(
        volume=image.volume_name, size_bytes=image.min_disk_gib * GIB, source_path=source
    )
    assert server.host is not None
    overlay = server.host.disk_mode == DiskMode.OVERLAY
    update_progress(
        job, 35, f"Creating {server.plan.disk_gib} GiB disk ({'overlay' if overlay else 'copy'})"
    )
    backend.create_disk(
        volume=disk_volume(server),
        base_volume=image.volume_name,
        size_gib=server.plan.disk_gib,
        overlay=overlay,
    )
    if image.cloud_init:
        update_progress(job, 50, "Writing the cloud-init seed")
        backend.put_volume(volume=seed_volume(server), data=seed_iso(seed_files(server)))
    update_progress(job, 60, "Defining the virtual machine")
    backend.define(domain_spec(server))
    update_progress(job, 80, "Booting")
    _boot(server, backend)
    return "Server is running"


def _boot(server: Server, backend: Backend) -> None:
    """Start the domain, wait until libvirt reports it running, and record that."""
    backend.start(server.domain_name)
    _wait_running(server, backend, "did not start")


def _wait_running(server: Server, backend: Backend, failure: str) -> None:
    state = wait_for(backend, server.domain_name, {PowerState.RUNNING}, timeout=60)
    if state != PowerState.RUNNING:
        raise BackendError(f"The server {failure} (state {state}).")
    _set(server.pk, ServerState.RUNNING)


def start(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 30, "Starting")
    _boot(server, backend)
    return "Server is running"


def _power_off(job: Job, server: Server, backend: Backend) -> str:
    timeout = settings.SHUTDOWN_TIMEOUT
    update_progress(job, 20, f"Asking the guest to shut down (up to {timeout} s)")
    backend.shutdown(server.domain_name)
    state = wait_for(backend, server.domain_name, {PowerState.STOPPED}, timeout=timeout)
    if state == PowerState.STOPPED:
        return "The guest shut down"
    update_progress(job, 80, f"The guest did not shut down within {timeout} s: forcing off")
    backend.force_off(server.domain_name)
    return "The guest was forced off after the shutdown timeout"


def stop(job: Job, server: Server, backend: Backend) -> str:
    message = _power_off(job, server, backend)
    _set(server.pk, ServerState.STOPPED)
    return message


def force_stop(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 40, "Forcing the server off")
    backend.force_off(server.domain_name)
    _set(server.pk, ServerState.STOPPED)
    return "Server is off"


def reboot(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 40, "Rebooting")
    backend.reboot(server.domain_name)
    _wait_running(server, backend, "did not come back")
    return "Server rebooted"


def pause(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 40, "Pausing (the guest keeps its memory, its CPUs stop)")
    backend.suspend(server.domain_name)
    state = wait_for(backend, server.domain_name, {PowerState.PAUSED}, timeout=30)
    if state != PowerState.PAUSED:
        raise BackendError(f"The server did not pause (state {state}).")
    _set(server.pk, ServerState.PAUSED)
    return "Server paused"


def resume(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 40, "Resuming")
    backend.resume(server.domain_name)
    _wait_running(server, backend, "did not resume")
    return "Server resumed"


def suspend(job: Job, server: Server, backend: Backend) -> str:
    message = _power_off(job, server, backend)
    _set(server.pk, ServerState.SUSPENDED, "Suspended by the provider")
    return f"Suspended. {message}"


def unsuspend(job: Job, server: Server, backend: Backend) -> str:
    update_progress(job, 30, "Lifting the suspension and starting")
    _boot(server, backend)
    return "Suspension lifted"


def terminate(job: Job, server: Server, backend: Backend | None) -> str:
    if backend is not None:
        update_progress(job, 30, "Removing the virtual machine and its disks")
        backend.undefine(server.domain_name, volumes=server_volumes(server))
    update_progress(job, 80, "Releasing addresses")
    with transaction.atomic():
        locked = lock_server(server.pk)
        freed = ipam.release_addresses(server=locked)
        set_state(locked, ServerState.TERMINATED)
        locked.terminated_at = timezone.now()
        locked.save(update_fields=["terminated_at"])
    return f"Server terminated; {freed} address(es) freed"


HANDLERS: dict[str, Callable[[Job, Server, Backend], str]] = {
    JobKind.PROVISION: provision,
    JobKind.START: start,
    JobKind.STOP: stop,
    JobKind.FORCE_STOP: force_stop,
    JobKind.REBOOT: reboot,
    JobKind.PAUSE: pause,
    JobKind.RESUME: resume,
    JobKind.SUSPEND: suspend,
    JobKind.UNSUSPEND: unsuspend,
    JobKind.TERMINATE: terminate,
}


def execute(job: Job) -> str:
    if job.kind == JobKind.HOST_REFRESH:
        from .hosts import refresh_host

        if job.host is None:
            raise BackendError("The host of this job was deleted.")
        refresh_host(host=job.host, job=job)
        return f"Host {job.host} refreshed"
    if job.server_id is None:
        raise BackendError("The server of this job was deleted.")
    server = Server.objects.select_related("host", "plan", "image", "customer").get(
        pk=job.server_id
    )
    if server.host is None:
        if job.kind == JobKind.TERMINATE:
            return terminate(job, server, None)
        raise BackendError("The server has no host.")
    return HANDLERS[job.kind](job, server, get_backend(server.host))


def record_failure(job: Job, error: BackendError | Exception) -> None:
    """After a failed job, put the server in the state the hypervisor reports."""
    if not job.server_id:
        return
    server = Server.objects.select_related("host").get(pk=job.server_id)
    if server.state == ServerState.TERMINATED:
        return
    observed = ServerState.ERROR
    if server.host is not None and job.kind != JobKind.PROVISION:
        try:
            observed = OBSERVED.get(
                get_backend(server.host).state(server.domain_name), ServerState.ERROR
            )
        except BackendError:
            observed = ServerState.ERROR
    with transaction.atomic():
        locked = lock_server(server.pk)
        if locked.state != observed:
            locked.state = observed  # the hypervisor's word beats the state machine
            locked.state_message = str(error)[:500]
            locked.save(update_fields=["state", "state_message", "updated_at"])
            from .events import publish_server

            publish_server(locked)
