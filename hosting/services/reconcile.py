"""Reconciliation: compare what each host runs with what the database says, and mend it.

- a domain whose state differs from the server's: the server takes the hypervisor's state;
- a server whose domain is missing: the server goes to error, flagged with the reason;
- a domain that no server owns: listed on the host, never deleted;
- a host that cannot be reached: the host goes offline and its servers to unknown.
Servers with a job in progress are left to that job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from ..backends import BackendError, HostUnreachable, PowerState, get_backend
from ..choices import ACTIVE_JOB_STATUSES, HostState, ServerState
from ..models import Host, Server
from . import audit, placement
from .events import publish_server

log = logging.getLogger(__name__)

S = ServerState
# servers whose state the hypervisor decides; the others are in the hands of a job
WATCHED = [S.RUNNING, S.STOPPED, S.PAUSED, S.ERROR, S.UNKNOWN]
OBSERVED: dict[PowerState, str] = {
    PowerState.RUNNING: S.RUNNING.value,
    PowerState.STOPPED: S.STOPPED.value,
    PowerState.PAUSED: S.PAUSED.value,
    PowerState.CRASHED: S.ERROR.value,
}


@dataclass
class Report:
    host: str
    reachable: bool = True
    fixed: list[tuple[str, str, str]] = field(default_factory=list)  # hostname, from, to
    missing: list[str] = field(default_factory=list)
    unknown_domains: list[str] = field(default_factory=list)
    error: str = ""
    recounted: bool = False  # the host's usage counters had drifted and were rebuilt


def _change(server: Server, state: str, message: str, report_list: list, item) -> None:
    with transaction.atomic():
        locked = Server.objects.select_for_update().get(pk=server.pk)
        if locked.state != server.state:
            return  # changed meanwhile by someone else: leave it
        before = locked.state
        locked.state = state
        locked.state_message = message[:500]
        locked.save(update_fields=["state", "state_message", "updated_at"])
        audit.record(
            action="server.reconcile",
            target=locked,
            details={"from": before, "to": state, "reason": message},
        )
        publish_server(locked)
    report_list.append(item)


def _expected(server: Server, observed: PowerState) -> str | None:
    """The power state to record. The provider's suspension (`Server.suspended`) is not a
    power state: reconciliation never sets or lifts it."""
    return OBSERVED.get(observed)


def reconcile_host(*, host: Host) -> Report:
    report = Report(host=host.name)
    servers = list(
        Server.objects.filter(host=host, state__in=WATCHED).exclude(
            jobs__status__in=ACTIVE_JOB_STATUSES
        )
    )
    try:
        domains = get_backend(host).domain_states()
    except HostUnreachable as exc:
        report.reachable, report.error = False, exc.message
        Host.objects.filter(pk=host.pk).update(
            state=HostState.OFFLINE, last_error=exc.message, last_reconciled_at=timezone.now()
        )
        if host.state != HostState.OFFLINE:
            audit.record(action="host.offline", target=host, details={"reason": exc.message})
        for server in servers:
            if server.state != S.UNKNOWN:
                _change(
                    server,
                    S.UNKNOWN,
                    f"Host {host.name} unreachable: {exc.message}",
                    report.fixed,
                    (server.hostname, server.state, S.UNKNOWN),
                )
        return report
    except BackendError as exc:
        report.error = exc.message
        Host.objects.filter(pk=host.pk).update(last_error=exc.message)
        return report

    for server in servers:
        observed = domains.get(server.domain_name, PowerState.MISSING)
        if observed == PowerState.MISSING:
            if server.state != S.ERROR or "missing" not in server.state_message:
                _change(
                    server,
                    S.ERROR,
                    f"Domain {server.domain_name} is missing on {host.name}.",
                    report.missing,
                    server.hostname,
                )
            continue
        expected = _expected(server, observed)
        if expected is not None and expected != server.state:
            _change(
                server,
                expected,
                f"Reconciled: the host reports {observed}.",
                report.fixed,
                (server.hostname, server.state, expected),
            )

    known = set(
        Server.objects.filter(host=host)
        .exclude(state=S.TERMINATED)
        .values_list("domain_name", flat=True)
    )
    report.unknown_domains = sorted(name for name in domains if name not in known)
    updates = {
        "unknown_domains": report.unknown_domains,
        "last_reconciled_at": timezone.now(),
        "last_seen": timezone.now(),
    }
    if host.state == HostState.OFFLINE:
        updates.update(state=HostState.ONLINE, last_error="")
        audit.record(action="host.online", target=host)
    Host.objects.filter(pk=host.pk).update(**updates)
    report.recounted = bool(placement.recount([host]))  # usage counters against the servers
    if report.fixed or report.missing:
        log.info("reconciled %s: fixed %s, missing %s", host.name, report.fixed, report.missing)
    return report
