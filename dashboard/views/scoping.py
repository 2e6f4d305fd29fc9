"""Tenancy for the panel's views: every object lookup goes through `visible_to`."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from hosting.access import request_access

__all__ = ["HtmxHttpRequest", "request_access"]


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (for type checkers)."""

    htmx: HtmxDetails
