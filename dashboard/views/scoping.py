"""Tenancy for the panel's views: every object lookup goes through `visible_to`."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from hosting.access import Access, access_for


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (for type checkers)."""

    htmx: HtmxDetails


def request_access(request: HttpRequest) -> Access:
    """The signed-in user's access, computed once per request."""
    access = getattr(request, "_paddock_access", None)
    if access is None:
        access = access_for(request.user)
        request._paddock_access = access  # type: ignore[attr-defined]
    return access
