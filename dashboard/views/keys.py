"""SSH keys: list, add (with the model's validation shown inline), delete."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from hosting.access import caller_from_request
from hosting.choices import ServerState
from hosting.models import SSHKey
from hosting.services import customers as customer_service
from hosting.services.errors import ServiceError

from ..forms import SSHKeyForm, add_service_error
from .scoping import request_access


@login_required
@require_http_methods(["GET", "POST"])
def key_list(request: HttpRequest) -> HttpResponse:
    access = request_access(request)
    form = SSHKeyForm(request.POST or None, access=access)
    if request.method == "POST" and form.is_valid():
        try:
            key = customer_service.add_ssh_key(
                customer=form.chosen_customer(),
                name=form.cleaned_data["name"],
                public_key=form.cleaned_data["public_key"],
                caller=caller_from_request(request),
            )
        except (ServiceError, ValidationError) as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"SSH key {key.name} added ({key.fingerprint}).")
            return redirect("dashboard:key-list")
    keys = (
        SSHKey.objects.visible_to(access)
        .select_related("customer")
        .annotate(server_count=Count("servers", filter=~Q(servers__state=ServerState.TERMINATED)))
    )
    context = {
        "form": form,
        "keys": keys,
        "show_customer": access.all_customers or len(access.customer_ids or ()) > 1,
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "dashboard/keys/list.html", context, status=status)


@login_required
@require_POST
def key_delete(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(SSHKey.objects.visible_to(request_access(request)), pk=pk)
    name = key.name
    customer_service.delete_ssh_key(key=key, caller=caller_from_request(request))
    messages.success(request, f"SSH key {name} deleted.")
    return redirect("dashboard:key-list")
