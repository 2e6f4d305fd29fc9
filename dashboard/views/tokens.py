"""API tokens of the signed-in user: create (the key is shown once), list, revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from hosting.access import caller_from_request
from hosting.models import APIToken
from hosting.services import tokens as token_service
from hosting.services.errors import ServiceError

from ..forms import TokenForm, add_service_error
from .scoping import request_access


def my_tokens(request: HttpRequest):
    return (
        APIToken.objects.visible_to(request_access(request))
        .filter(user=request.user)
        .select_related("customer")
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, access=request_access(request))
    new_key = None
    if request.method == "POST" and form.is_valid():
        caller = caller_from_request(request)
        assert caller.user is not None  # login_required
        try:
            _, new_key = token_service.issue_token(
                user=caller.user,
                scope=form.cleaned_data["scope"],
                customer=form.chosen_customer(),
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                caller=caller,
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            # The key is rendered in this response only: it is not stored anywhere.
            form = TokenForm(access=request_access(request))
    context = {"form": form, "tokens": my_tokens(request), "new_key": new_key}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "dashboard/tokens/list.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(my_tokens(request), pk=pk)
    if token.revoked_at is None:
        token_service.revoke_token(token=token, caller=caller_from_request(request))
        messages.success(request, f"Token {token.name or token.prefix} revoked.")
    return redirect("dashboard:token-list")
