"""Middleware of the deployment (not of the domain)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ForwardedClientAddressMiddleware:
    """Behind the HTTPS proxy (settings.BEHIND_HTTPS_PROXY), the client's address is the
    last one in X-Forwarded-For: the one the proxy appended. Put it into REMOTE_ADDR so that
    audit events and login throttling see the client, not the proxy. Addresses before it
    came from the client and are not trusted. Without the setting nothing changes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.enabled = getattr(settings, "BEHIND_HTTPS_PROXY", False)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.enabled:
            forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            with contextlib.suppress(ValueError):
                request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(last))
        return self.get_response(request)
