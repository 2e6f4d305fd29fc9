"""The runners of server jobs: what a worker does for each kind. Every step is safe to run
twice (a retry, or a worker that takes over a lost one, starts from the top).

Each runner is registered for its job kind (hosting/runners.py) and gets a JobContext:
`ctx.server`, `ctx.backend`, `ctx.progress()`, `ctx.set_state()`. Hypervisor access goes
through hosting.backends.
"""

from __future__ import annotations

import logging
import os
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..backends import (
    Backend,
    BackendError,
    GuestSpec,
    HostUnreachable,
    ImageSource,
    PowerState,
)
from ..choices import DiskMode, JobKind, ServerState
from ..imagestore import source_path as image_source_path
from ..models import Server
from ..runners import JobContext, runner
from . import ipam, placement
from .cloudinit import seed_files
from .servers import lock_server

log = logging.getLogger(__name__)

GIB = 1024**3
POLL_INTERVAL = 0.5
# how long a guest may take to report running after start, reboot or resume
BOOT_TIMEOUT = 60

OBSERVED = {
    PowerState.RUNNING: ServerState.RUNNING,
    PowerState.STOPPED: ServerState.STOPPED,
    PowerState.PAUSED: ServerState.PAUSED,
    PowerState.CRASHED: ServerState.ERROR,
    PowerState.MISSING: ServerState.ERROR,
}


def guest_spec(server: Server) -> GuestSpec:
    """The neutral description of a server's guest, for its host's backend."""
    assert server.host is not None
    image = server.image
    addresses = list(server.addresses.select_related("pool"))
    gateway = next(
        (a.pool.gateway for a in addresses if a.pool.gateway and ":" not in a.pool.gateway), None
    )
    nameservers = [d.strip() for a in addresses for d in a.pool.dns_servers.split(",") if d.strip()]
    return GuestSpec(
        name=server.domain_name,
        uuid=str(server.uuid),
        vcpus=server.plan.vcpus,
        memory_mib=server.plan.memory_mib,
        disk_gib=server.plan.disk_gib,
        image=ImageSource(
            volume=image.volume_name,
            # inside the store, a regular file: checked again at use
            source_path=image_source_path(image),
            format=image.format,
            min_size_bytes=image.min_disk_gib * GIB,
        ),
        network=server.host.network,
        mac_address=server.mac_address,
        addresses=tuple(f"{a.address}/{a.pool.ip_network.prefixlen}" for a in addresses),
        seed_files=seed_files(server) if image.cloud_init else None,
        disk_overlay=server.host.disk_mode == DiskMode.OVERLAY,
        memory_hard_limit=settings.MEMORY_HARD_LIMIT,
        metadata={"hostname": server.hostname, "customer": str(server.customer_id)},
        hostname=server.hostname,
        gateway=gateway,
        nameservers=tuple(nameservers),
        ssh_keys=tuple(k.public_key for k in server.ssh_keys.all()),
        swap_mib=server.plan.swap_mib,
        max_processes=server.plan.max_processes,
    )


def wait_for(backend: Backend, name: str, wanted: set[PowerState], timeout: float) -> PowerState:
    deadline = time.monotonic() + timeout
    while True:
        state = backend.state(name)
        if state in wanted or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_INTERVAL)


def record_failure(ctx: JobContext, error: BaseException) -> None:
    """After a failed job, put the server in the state the hypervisor reports."""
    server = ctx.server
    if server is None:
        return
    observed = ServerState.ERROR
    if isinstance(error, HostUnreachable) and ctx.job.kind != JobKind.PROVISION:
        observed = ServerState.UNKNOWN  # nobody can tell what the guest does now
    elif server.host is not None and ctx.job.kind != JobKind.PROVISION:
        try:
            observed = OBSERVED.get(ctx.backend.state(server.domain_name), ServerState.ERROR)
        except HostUnreachable:
            observed = ServerState.UNKNOWN
        except BackendError:
            observed = ServerState.ERROR
    with transaction.atomic():
        ctx.require_lease()
        locked = lock_server(server.pk)
        if locked.state in (ServerState.TERMINATED, observed):
            return
        locked.state = observed  # the hypervisor's word beats the state machine
        locked.state_message = str(getattr(error, "message", error))[:500]
        locked.save(update_fields=["state", "state_message", "updated_at"])
        from .events import publish_server

        publish_server(locked)


def server_runner(kind: str, **options):
    """A runner for a server's job: on a final failure the server takes the state its
    hypervisor reports."""
    options.setdefault("on_failure", record_failure)
    return runner(kind, **options)


def _undo_provision(ctx: JobContext, error: BaseException) -> None:
    """Remove what a failed provisioning left on the host; the server stays, in error,
    for its owner to see why and terminate (or for staff to retry)."""
    server = ctx.server
    if server is None or server.host is None:
        return
    try:
        ctx.backend.deprovision(server.domain_name)
    except BackendError:
        log.warning("could not clean up after failed provisioning of %s", server, exc_info=True)


@server_runner(JobKind.PROVISION, undo=_undo_provision, longest_step=BOOT_TIMEOUT)
def provision(ctx: JobContext) -> str:
    server, backend = ctx.server, ctx.backend
    assert server is not None and server.host is not None
    ctx.set_state(ServerState.PROVISIONING)
    if ctx.params.get("restore_backup"):
        # a restore into a new server: its disk is the backup's, put there first (the
        # provisioning keeps a disk that exists)
        from ..models import Backup
        from .backups import put_backup_disk

        record = Backup.objects.filter(pk=ctx.params["restore_backup"]).first()
        if record is None:
            raise BackendError("The backup to restore was deleted.")
        put_backup_disk(ctx, record, base=2, span=30)
    elif ctx.params.get("rootfs_archive"):
        # an imported container (hosting/services/imports.py): its root file system is
        # the archive's, in place before the provisioning (which keeps it)
        archive = ctx.params["rootfs_archive"]
        # (gone once a run provisioned it: a run taking over after that finds the guest)
        if os.path.exists(archive) or backend.state(server.domain_name) == PowerState.MISSING:
            ctx.progress(5, "Uploading the imported root file system")
            backend.replace_disk(server.domain_name, source_path=archive)
    backend.provision(guest_spec(server), progress=ctx.progress)
    _wait_running(ctx, "did not start")
    if ctx.params.get("rootfs_archive"):
        from .imports import discard_staged

        discard_staged(ctx.params["rootfs_archive"])  # it is the container's disk now
    return "Server is running"


def _boot(ctx: JobContext) -> None:
    """Start the domain, wait until libvirt reports it running, and record that."""
    assert ctx.server is not None
    ctx.backend.start(ctx.server.domain_name)
    _wait_running(ctx, "did not start")


def _wait_running(ctx: JobContext, failure: str) -> None:
    assert ctx.server is not None
    state = wait_for(ctx.backend, ctx.server.domain_name, {PowerState.RUNNING}, BOOT_TIMEOUT)
    if state != PowerState.RUNNING:
        raise BackendError(f"The server {failure} (state {state}).")
    ctx.set_state(ServerState.RUNNING)


@server_runner(JobKind.START, longest_step=BOOT_TIMEOUT)
def start(ctx: JobContext) -> str:
    ctx.progress(30, "Starting")
    _boot(ctx)
    return "Server is running"


def power_off(ctx: JobContext) -> str:
    """Shut the job's server down, forcing it off after SHUTDOWN_TIMEOUT."""
    assert ctx.server is not None
    name, backend = ctx.server.domain_name, ctx.backend
    timeout = settings.SHUTDOWN_TIMEOUT
    if backend.state(name) == PowerState.STOPPED:
        return "The guest was off already"
    ctx.progress(20, f"Asking the guest to shut down (up to {timeout} s)")
    backend.shutdown(name)
    state = wait_for(backend, name, {PowerState.STOPPED}, timeout=timeout)
    if state == PowerState.STOPPED:
        return "The guest shut down"
    ctx.progress(80, f"The guest did not shut down within {timeout} s: forcing off")
    backend.force_off(name)
    return "The guest was forced off after the shutdown timeout"


@server_runner(JobKind.STOP, longest_step="SHUTDOWN_TIMEOUT")
def stop(ctx: JobContext) -> str:
    message = power_off(ctx)
    ctx.set_state(ServerState.STOPPED)
    return message


@server_runner(JobKind.FORCE_STOP)
def force_stop(ctx: JobContext) -> str:
    assert ctx.server is not None
    ctx.progress(40, "Forcing the server off")
    ctx.backend.force_off(ctx.server.domain_name)
    ctx.set_state(ServerState.STOPPED)
    return "Server is off"


@server_runner(JobKind.REBOOT, longest_step=BOOT_TIMEOUT)
def reboot(ctx: JobContext) -> str:
    assert ctx.server is not None
    ctx.progress(40, "Rebooting")
    ctx.backend.reboot(ctx.server.domain_name)
    _wait_running(ctx, "did not come back")
    return "Server rebooted"


@server_runner(JobKind.PAUSE, longest_step=30)
def pause(ctx: JobContext) -> str:
    assert ctx.server is not None
    ctx.progress(40, "Pausing (the guest keeps its memory, its CPUs stop)")
    ctx.backend.pause(ctx.server.domain_name)
    state = wait_for(ctx.backend, ctx.server.domain_name, {PowerState.PAUSED}, timeout=30)
    if state != PowerState.PAUSED:
        raise BackendError(f"The server did not pause (state {state}).")
    ctx.set_state(ServerState.PAUSED)
    return "Server paused"


@server_runner(JobKind.RESUME, longest_step=BOOT_TIMEOUT)
def resume(ctx: JobContext) -> str:
    assert ctx.server is not None
    ctx.progress(40, "Resuming")
    ctx.backend.resume(ctx.server.domain_name)
    _wait_running(ctx, "did not resume")
    return "Server resumed"


@server_runner(JobKind.SUSPEND, longest_step="SHUTDOWN_TIMEOUT")
def suspend(ctx: JobContext) -> str:
    """The suspension flag is set by the service when it is asked; this shuts down."""
    message = power_off(ctx)
    ctx.set_state(ServerState.STOPPED, "Suspended by the provider")
    return f"Suspended. {message}"


@server_runner(JobKind.UNSUSPEND, longest_step=BOOT_TIMEOUT)
def unsuspend(ctx: JobContext) -> str:
    """The flag is lifted by the service when it is asked; this starts the server."""
    assert ctx.server is not None
    if ctx.backend.state(ctx.server.domain_name) == PowerState.RUNNING:
        ctx.set_state(ServerState.RUNNING)
        return "Suspension lifted; the server was running"
    ctx.progress(30, "Suspension lifted; starting")
    _boot(ctx)
    return "Suspension lifted"


@server_runner(JobKind.TERMINATE)
def terminate(ctx: JobContext) -> str:
    server = ctx.server
    assert server is not None
    if server.host is not None:
        ctx.progress(30, "Removing the virtual machine and its disks")
        ctx.backend.deprovision(server.domain_name)
    from .imports import discard_staged_of

    discard_staged_of(server)  # an import's archive its provisioning never took
    ctx.progress(80, "Releasing addresses")
    with transaction.atomic():
        ctx.require_lease()
        locked = lock_server(server.pk)
        freed = ipam.release_addresses(server=locked)
        from .servers import set_state

        set_state(locked, ServerState.TERMINATED)
        placement.release(locked)  # its room on the host (and a move's target) is free
        locked.terminated_at = timezone.now()
        locked.save(update_fields=["terminated_at"])
        from .backups import keep_after_termination

        keep_after_termination(locked)
    return f"Server terminated; {freed} address(es) freed"
