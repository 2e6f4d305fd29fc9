"""The server page's snapshots and backups, and the backups of deleted servers.

Each form posts here; the service decides (hosting/services/snapshots.py and
backups.py); an htmx request gets the server page's live part back, like a power
button, so the new job's progress shows at once.
"""

from __future__ import annotations

import uuid as uuid_lib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hosting.access import caller_from_request
from hosting.actions import ACTIONS, refusal
from hosting.backends import capabilities_of
from hosting.choices import BackupStatus
from hosting.models import Backup, Server
from hosting.permissions import caller_may
from hosting.services import backups as backup_service
from hosting.services import snapshots as snapshot_service
from hosting.services.errors import NotPermitted, ServiceError

from .scoping import HtmxHttpRequest, request_access
from .servers import get_server, live_context, server_url


def _uuid(value) -> uuid_lib.UUID:
    try:
        return uuid_lib.UUID(str(value))
    except ValueError:
        raise Http404("No such object.") from None


def allowed_actions(request: HttpRequest, server: Server) -> dict[str, bool]:
    """Which snapshot and backup actions this caller may ask on `server` now (the same
    registry check as the services'), by kind: the page offers only those."""
    caller = caller_from_request(request)
    if not caller.access.can_write:
        return {}
    capabilities = capabilities_of(server.host) if server.host is not None else None
    return {
        a.kind: caller_may(caller, a.kind)
        and refusal(
            a,
            state=server.state,
            suspended=server.suspended,
            provider=caller.is_provider,
            capabilities=capabilities,
        )
        is None
        for a in ACTIONS
        if not a.plain
    }


def protection_context(request: HttpRequest, server: Server) -> dict:
    """What the snapshots and backups section of a server page shows."""
    backups = list(server.backups.select_related("parent"))
    return {
        "allowed": allowed_actions(request, server),
        "snapshots": list(server.snapshots.all()),
        "backups": backups,
        "snapshot_slots": server.plan.snapshot_slots,
        "backup_slots": server.plan.backup_slots,
        "backups_used": sum(
            1 for b in backups if b.status != BackupStatus.FAILED and not b.scheduled
        ),
        "storage_used": backup_service.storage_used(server.customer_id),
    }


def _done(request: HtmxHttpRequest, server: Server, outcome) -> HttpResponse:
    """Run `outcome()` (a service call returning a message), report it, answer."""
    try:
        message = outcome()
    except NotPermitted as exc:
        raise PermissionDenied(exc.message) from exc
    except ServiceError as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, message)
    if request.htmx:
        server = get_server(request, server.uuid)
        return render(request, "dashboard/servers/_live.html", live_context(request, server))
    return redirect(server_url(server))


@login_required
@require_POST
def snapshot_create(request: HtmxHttpRequest, uuid) -> HttpResponse:
    server = get_server(request, uuid)

    def outcome() -> str:
        snapshot, job = snapshot_service.request_snapshot(
            server=server,
            name=request.POST.get("name", ""),
            description=request.POST.get("description", ""),
            with_memory=request.POST.get("with_memory") == "on",
            caller=caller_from_request(request),
        )
        return f"Snapshot {snapshot.name}: being taken (job #{job.pk})."

    return _done(request, server, outcome)


@login_required
@require_POST
def snapshot_action(request: HtmxHttpRequest, uuid, snapshot, action: str) -> HttpResponse:
    server = get_server(request, uuid)
    snap = get_object_or_404(server.snapshots.all(), uuid=_uuid(snapshot))
    services = {
        "revert": snapshot_service.request_revert,
        "delete": snapshot_service.request_delete,
    }
    if action not in services:
        raise Http404("No such action.")

    def outcome() -> str:
        job = services[action](snapshot=snap, caller=caller_from_request(request))
        return f"Snapshot {snap.name}: {action} requested (job #{job.pk})."

    return _done(request, server, outcome)


@login_required
@require_POST
def backup_create(request: HtmxHttpRequest, uuid) -> HttpResponse:
    server = get_server(request, uuid)

    def outcome() -> str:
        backup, job = backup_service.request_backup(
            server=server,
            full=request.POST.get("full") == "on",
            caller=caller_from_request(request),
        )
        return f"{backup.get_kind_display()} backup: started (job #{job.pk})."

    return _done(request, server, outcome)


def _backup(request: HttpRequest, backup) -> Backup:
    queryset = Backup.objects.visible_to(request_access(request)).select_related("server")
    return get_object_or_404(queryset, uuid=_uuid(backup))


@login_required
@require_POST
def backup_action(request: HtmxHttpRequest, backup, action: str) -> HttpResponse:
    record = _backup(request, backup)
    caller = caller_from_request(request)
    if action == "restore-new":
        try:
            server, job = backup_service.restore_into_new_server(
                backup=record, hostname=request.POST.get("hostname", "").strip(), caller=caller
            )
        except NotPermitted as exc:
            raise PermissionDenied(exc.message) from exc
        except (ServiceError, ValidationError) as exc:
            text = exc.message if isinstance(exc, ServiceError) else " ".join(exc.messages)
            messages.error(request, text)
            return redirect(request.POST.get("next") or reverse("dashboard:deleted-servers"))
        messages.success(request, f"{server.hostname} is being restored (job #{job.pk}).")
        return redirect(server_url(server))
    actions = {
        "restore": lambda: backup_service.request_restore(backup=record, caller=caller),
        "verify": lambda: backup_service.request_verify(backup=record, caller=caller),
    }
    if action == "delete":

        def outcome() -> str:
            count = backup_service.delete_backup(backup=record, caller=caller)
            return f"{count} backup(s) deleted."

    elif action in actions:

        def outcome() -> str:
            job = actions[action]()
            return f"Backup: {action} requested (job #{job.pk})."

    else:
        raise Http404("No such action.")
    if record.server.terminated_at is not None:  # no live page: back to the list
        try:
            messages.success(request, outcome())
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect(reverse("dashboard:deleted-servers"))
    return _done(request, get_server(request, record.server.uuid), outcome)


@login_required
def deleted_servers(request: HttpRequest) -> HttpResponse:
    """Terminated servers whose backups are still kept, to restore into a new server."""
    backups = (
        Backup.objects.visible_to(request_access(request))
        .filter(server__terminated_at__isnull=False)
        .select_related("server", "server__plan", "parent")
        .order_by("server_id", "-created_at")
    )
    servers: dict[int, dict] = {}
    for backup in backups:
        entry = servers.setdefault(backup.server_id, {"server": backup.server, "backups": []})
        entry["backups"].append(backup)
    return render(request, "dashboard/servers/deleted.html", {"entries": list(servers.values())})
