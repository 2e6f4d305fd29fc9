"""Server lifecycle requests: create, power actions, terminate.

Each call runs in one transaction: it checks the state machine, writes the rows, creates
the Job and leaves the hypervisor work to a worker (enqueued on commit).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..access import Caller
from ..actions import IllegalAction, get_action, refusal, require_permitted
from ..choices import CustomerStatus, JobKind, JobStatus, ServerState
from ..models import Customer, Host, Image, Job, PlacementGroup, Plan, Server, SSHKey
from ..permissions import caller_may
from ..states import require_transition
from . import audit, ipam, placement
from .errors import Conflict, NotPermitted, ServiceError
from .events import publish_server
from .jobs import create_job
from .placement import PlacementRequest


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
    zone: str = "",
    groups: Iterable[PlacementGroup] = (),
    caller: Caller,
    job_params: dict | None = None,
    host: Host | None = None,
    addresses: Iterable[str] = (),
) -> tuple[Server, Job]:
    """Place, record and queue a new server. Nothing is left behind if any step fails.

    `zone` restricts placement to one zone's hosts; `groups` are the customer's placement
    groups (affinity, anti-affinity) the server joins; `host` places it there (if it has
    room); `addresses` are ones it should get if free in its pools (an import's own)."""
    if not caller.access.can_write or not caller.access.allows_customer(customer.pk):
        raise NotPermitted("You cannot order servers for this customer.")
    if not caller_may(caller, JobKind.PROVISION):
        raise NotPermitted("You may not create servers.")
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
    group_list = list(groups)
    if any(g.customer_id != customer.pk for g in group_list):
        raise ServiceError("Placement groups must belong to the same customer.", field="groups")

    server = Server(
        customer=customer, plan=plan, image=image, hostname=hostname, mac_address=new_mac()
    )
    server.full_clean(exclude=["host", "domain_name", "mac_address"])  # before any lock

    with transaction.atomic():
        request = PlacementRequest.for_order(
            plan=plan, customer=customer, zone=zone, groups=group_list, pinned_host=host
        )
        host = server.host = placement.claim(request)
        try:
            with transaction.atomic():
                server.save()
        except IntegrityError:  # a MAC collision: 1 in 16 million, try once more
            server.mac_address = new_mac()
            server.save()
        if keys:
            server.ssh_keys.set(keys)
        if group_list:
            server.placement_groups.set(group_list)
        ipam.assign_addresses(server=server, wanted=addresses)
        job = create_job(kind=JobKind.PROVISION, server=server, params=job_params, caller=caller)
        audit.record(
            action="server.create",
            caller=caller,
            target=server,
            details={"plan": plan.name, "image": image.name, "host": host.name, "job": job.pk},
        )
    return server, job


def request_action(*, server: Server, action: str, caller: Caller) -> Job:
    """Accept an action from the registry (hosting/actions.py) for a worker to carry out,
    if the server's state and the caller allow it."""
    entry = get_action(action)
    if action == JobKind.MIGRATE:  # with its defaults: a target chosen, live if it runs
        from .migration import request_migration

        return request_migration(server=server, caller=caller)
    if not entry.plain:
        raise IllegalAction(f"{entry.label} needs more than the server: use its own route.")
    access = caller.access
    if not access.can_write or not access.allows_customer(server.customer_id):
        raise NotPermitted(f"You cannot {entry.verb} this server.")
    require_permitted(entry, provider=caller.is_provider)
    if not caller_may(caller, entry.kind):  # the Django permission of a provider's action
        raise NotPermitted(f"You may not {entry.verb} servers.")
    with transaction.atomic():
        locked = lock_server(server.pk)
        reason = refusal(
            entry,
            state=locked.state,
            suspended=locked.suspended,
            provider=caller.is_provider,
            capabilities=_capabilities(locked),
        )
        if reason:
            raise IllegalAction(reason)
        if action == JobKind.TERMINATE:
            # terminate wins over whatever was queued: cancel it so the slot is free
            _cancel_queued_jobs(locked)
            locked.state = ServerState.TERMINATING
            locked.save(update_fields=["state", "updated_at"])
            publish_server(locked)
        elif action in (JobKind.SUSPEND, JobKind.UNSUSPEND):
            # the flag changes now, whatever the host says: the customer is locked out (or
            # let back in) at once; the job then shuts the guest down (or starts it)
            locked.suspended = action == JobKind.SUSPEND
            locked.suspended_at = timezone.now() if locked.suspended else None
            locked.save(update_fields=["suspended", "suspended_at", "updated_at"])
            publish_server(locked)
        job = create_job(kind=action, server=locked, caller=caller)
        audit.record(
            action=f"server.{action}", caller=caller, target=locked, details={"job": job.pk}
        )
    server.refresh_from_db()
    return job


def _capabilities(server: Server) -> frozenset[str] | None:
    """The capabilities of the server's backend, when the backend says them."""
    if server.host is None:
        return None
    from ..backends import capabilities_of

    return capabilities_of(server.host)


def _cancel_queued_jobs(server: Server) -> None:
    from .jobs import finish

    for job in Job.objects.select_for_update().filter(server=server, status=JobStatus.QUEUED):
        finish(job, status=JobStatus.CANCELLED, message="Cancelled: the server is terminating")
    if Job.objects.filter(server=server, status=JobStatus.RUNNING).exists():
        raise Conflict("A job is running on this server; terminate it when the job ends.")


def set_state(server: Server, state: str, message: str = "") -> None:
    """Record a state change decided by a worker; checks the state machine."""
    require_transition(server.state, state)
    server.state = state
    server.state_message = message[:500]
    server.save(update_fields=["state", "state_message", "updated_at"])
    publish_server(server)
