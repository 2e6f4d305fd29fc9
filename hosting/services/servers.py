"""Server lifecycle requests: create, power actions, terminate.

Each call runs in one transaction: it checks the state machine, writes the rows, creates
the Job and leaves the hypervisor work to a worker (enqueued on commit).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from ..choices import CustomerStatus, JobKind, ServerState
from ..models import Customer, Image, Job, Plan, Server, SSHKey
from ..states import POWER_ACTIONS, require_action
from . import audit, ipam
from .errors import Conflict, ServiceError
from .events import publish_server
from .jobs import create_job
from .placement import choose_host


def lock_server(server_id: int) -> Server:
    return (
        Server.objects.select_for_update(of=("self",))
        .select_related("host", "customer")
        .get(pk=server_id)
    )


def new_mac() -> str:
    """A random address in QEMU's locally administered 52:54:00 range."""
    tail = secrets.token_bytes(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def create_server(
    *,
    customer: Customer,
    plan: Plan,
    image: Image,
    hostname: str,
    ssh_keys: Iterable[SSHKey] = (),
    requested_by: Any = None,
    token: Any = None,
    request: Any = None,
) -> tuple[Server, Job]:
    """Place, record and queue a new server. Nothing is left behind if any step fails."""
    if customer.status != CustomerStatus.ACTIVE:
        raise Conflict(f"Customer {customer.name} is {customer.status}.")
    if not plan.is_active:
        raise ServiceError("This plan is not available.", field="plan")
    if not image.is_active:
        raise ServiceError("This image is not available.", field="image")
    if image.kind != plan.kind:
        raise ServiceError(
            f"Image {image.name} is for {image.get_kind_display().lower()}s; "
            f"plan {plan.name} is for {plan.get_kind_display().lower()}s.",
            field="image",
        )
    if image.min_disk_gib > plan.disk_gib:
        raise ServiceError(
            f"Image {image.name} needs at least {image.min_disk_gib} GiB of disk.", field="plan"
        )
    keys = list(ssh_keys)
    if any(k.customer_id != customer.pk for k in keys):
        raise ServiceError("SSH keys must belong to the same customer.", field="ssh_keys")

    server = Server(
        customer=customer, plan=plan, image=image, hostname=hostname, mac_address=new_mac()
    )
    server.full_clean(exclude=["host", "domain_name", "mac_address"])  # before any lock

    with transaction.atomic():
        host = server.host = choose_host(plan=plan)
        try:
            with transaction.atomic():
                server.save()
        except IntegrityError:  # a MAC collision: 1 in 16 million, try once more
            server.mac_address = new_mac()
            server.save()
        if keys:
            server.ssh_keys.set(keys)
        ipam.assign_addresses(server=server)
        job = create_job(
            kind=JobKind.PROVISION, server=server, requested_by=requested_by, token=token
        )
        audit.record(
            action="server.create",
            request=request,
            actor=requested_by,
            token=token,
            target=server,
            details={"plan": plan.name, "image": image.name, "host": host.name, "job": job.pk},
        )
    return server, job


def request_action(
    *,
    server: Server,
    action: str,
    requested_by: Any = None,
    token: Any = None,
    request: Any = None,
) -> Job:
    """Accept a power action or termination for a worker to carry out."""
    if action not in (*POWER_ACTIONS, JobKind.TERMINATE):
        raise ServiceError(f"Unknown action {action!r}.")
    with transaction.atomic():
        locked = lock_server(server.pk)
        require_action(locked.state, action)
        if action == JobKind.TERMINATE:
            # terminate wins over whatever was queued: cancel it so the slot is free
            _cancel_queued_jobs(locked)
            locked.state = ServerState.TERMINATING
            locked.save(update_fields=["state", "updated_at"])
            publish_server(locked)
        job = create_job(kind=action, server=locked, requested_by=requested_by, token=token)
        audit.record(
            action=f"server.{action}",
            request=request,
            actor=requested_by,
            token=token,
            target=locked,
            details={"job": job.pk},
        )
    server.refresh_from_db()
    return job


def _cancel_queued_jobs(server: Server) -> None:
    from ..choices import JobStatus
    from .jobs import finish

    for job in Job.objects.select_for_update().filter(server=server, status=JobStatus.QUEUED):
        finish(job, status=JobStatus.CANCELLED, message="Cancelled: the server is terminating")
    if Job.objects.filter(server=server, status=JobStatus.RUNNING).exists():
        raise Conflict("A job is running on this server; terminate it when the job ends.")


def set_state(server: Server, state: str, message: str = "") -> None:
    """Record a state change decided by a worker; checks the state machine."""
    from ..states import require_transition

    require_transition(server.state, state)
    server.state = state
    server.state_message = message[:500]
    server.save(update_fields=["state", "state_message", "updated_at"])
    publish_server(server)
