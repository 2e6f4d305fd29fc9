"""Servers: list, create, the server page with its live part, power actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from hosting.access import caller_from_request
from hosting.choices import ACTIVE_JOB_STATUSES, ServerState
from hosting.filtersets import ServerFilterSet
from hosting.models import IPAddress, Job, Server
from hosting.services import servers as server_service
from hosting.services.errors import NotPermitted, ServiceError

from ..forms import ServerCreateForm, add_service_error
from ..power import BY_SLUG, power_buttons, terminate_button
from .scoping import HtmxHttpRequest, request_access

PAGE_SIZE = 25
# States that change without anyone pressing a button: the list refreshes itself.
TRANSITIONAL_STATES = (ServerState.PENDING, ServerState.PROVISIONING, ServerState.TERMINATING)
HISTORY_LENGTH = 15


def server_url(server: Server) -> str:
    return reverse("dashboard:server-detail", kwargs={"uuid": server.uuid})


def visible_servers(request: HttpRequest):
    return Server.objects.visible_to(request_access(request))


@login_required
def server_list(request: HtmxHttpRequest) -> HttpResponse:
    access = request_access(request)
    queryset = (
        visible_servers(request)
        .select_related("customer", "plan", "image", "host")
        .prefetch_related(Prefetch("addresses", queryset=IPAddress.objects.order_by("address")))
        .annotate(
            busy=Exists(Job.objects.filter(server=OuterRef("pk"), status__in=ACTIVE_JOB_STATUSES))
        )
    )
    if not request.GET.getlist("state"):
        queryset = queryset.alive()
    # the filter choices offer only what this user may see (hosting.filtersets)
    filterset = ServerFilterSet(request.GET or None, queryset=queryset, request=request)
    servers = filterset.qs if filterset.is_bound else queryset
    page = Paginator(servers, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filterset": filterset,
        "page": page,
        "servers": page.object_list,
        "states": ServerState.choices,
        "selected_states": request.GET.getlist("state"),
        "query": request.GET.get("q", ""),
        "refresh": any(s.busy or s.state in TRANSITIONAL_STATES for s in page.object_list),
        "show_customer": access.all_customers or len(access.customer_ids or ()) > 1,
        "show_host": access.is_staff,
    }
    if request.htmx:
        return render(request, "dashboard/servers/_table.html", context)
    return render(request, "dashboard/servers/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def server_create(request: HttpRequest) -> HttpResponse:
    access = request_access(request)
    form = ServerCreateForm(request.POST or None, access=access)
    if request.method == "POST" and form.is_valid():
        try:
            server, job = server_service.create_server(
                customer=form.chosen_customer(),
                plan=form.cleaned_data["plan"],
                image=form.cleaned_data["image"],
                hostname=form.cleaned_data["hostname"],
                ssh_keys=form.cleaned_data["ssh_keys"],
                caller=caller_from_request(request),
            )
        except (ServiceError, ValidationError) as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"{server.hostname} is being created (job #{job.pk}).")
            return redirect(server_url(server))
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "dashboard/servers/create.html", {"form": form}, status=status)


def live_context(request: HttpRequest, server: Server) -> dict:
    access = request_access(request)
    jobs = list(server.jobs.select_related("requested_by", "host")[:HISTORY_LENGTH])
    active = next((j for j in jobs if j.is_active), None)
    if active is None and len(jobs) == HISTORY_LENGTH:
        active = server.jobs.active().first()
    return {
        "server": server,
        "active_job": active,
        # the active job has its own card with the live progress bar
        "jobs": [j for j in jobs if j != active],
        "buttons": power_buttons(server, caller_from_request(request)),
        "terminate": terminate_button(server, caller_from_request(request)),
        "addresses": sorted(server.addresses.all(), key=lambda a: (a.pool.family, a.address)),
        "ssh_keys": list(server.ssh_keys.all()),
        "show_host": access.is_staff,
        **protection(request, server),
    }


def protection(request: HttpRequest, server: Server) -> dict:
    from .backups import protection_context

    return protection_context(request, server)


def get_server(request: HttpRequest, uuid) -> Server:
    queryset = visible_servers(request).select_related("customer", "plan", "image", "host")
    queryset = queryset.prefetch_related(
        Prefetch("addresses", queryset=IPAddress.objects.select_related("pool"))
    )
    return get_object_or_404(queryset, uuid=uuid)


@login_required
def server_detail(request: HttpRequest, uuid) -> HttpResponse:
    server = get_server(request, uuid)
    return render(request, "dashboard/servers/detail.html", live_context(request, server))


@login_required
def server_live(request: HttpRequest, uuid) -> HttpResponse:
    """The part of the server page that the browser reloads when a job ends."""
    server = get_server(request, uuid)
    return render(request, "dashboard/servers/_live.html", live_context(request, server))


@login_required
@require_POST
def server_action(request: HtmxHttpRequest, uuid, action: str) -> HttpResponse:
    server = get_server(request, uuid)
    entry = BY_SLUG.get(action)
    if entry is None:
        raise Http404("No such action.")
    try:
        job = server_service.request_action(
            server=server, action=entry.kind, caller=caller_from_request(request)
        )
    except NotPermitted as exc:
        raise PermissionDenied(exc.message) from exc
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{entry.label}: requested (job #{job.pk}).")
    if request.htmx:
        server = get_server(request, uuid)
        return render(request, "dashboard/servers/_live.html", live_context(request, server))
    return redirect(server_url(server))
