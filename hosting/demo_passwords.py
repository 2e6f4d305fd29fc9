"""The demo's published passwords are good only on this machine.

`make run` seeds the logins admin / paddock-admin and demo / paddock-demo (README). They
are refused at two places whenever the panel can be reached from elsewhere:

- `manage.py runstack` refuses to listen on anything but loopback while the demo logins
  have these passwords (devtools/management/commands/runstack.py);
- and, in case the panel is exposed some other way (a proxy, another server), the login
  itself refuses them for a request that did not come from loopback directly: the
  authentication backend below, used by the panel's login and the Django admin.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

logger = logging.getLogger(__name__)

DEMO_ADMIN_PASSWORD = "paddock-admin"
DEMO_PASSWORD = "paddock-demo"
KNOWN_DEMO_PASSWORDS = frozenset({DEMO_ADMIN_PASSWORD, DEMO_PASSWORD})
# A proxy on this machine passes other machines' requests on from a loopback address.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def is_known_demo_password(password: str | None) -> bool:
    return password in KNOWN_DEMO_PASSWORDS


def is_loopback(host: str) -> bool:
    """An address (or `localhost`) that only this machine can reach."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_loopback(request: HttpRequest) -> bool:
    """The request came from this machine itself, not passed on by a proxy."""
    if any(request.META.get(header) for header in FORWARDING_HEADERS):
        return False
    return is_loopback(str(request.META.get("REMOTE_ADDR") or ""))


class DemoPasswordGuardBackend(ModelBackend):
    """Django's ModelBackend, except that a known demo password is refused unless the
    request came from loopback. Refusing raises PermissionDenied, so that no backend
    after this one is asked either."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is not None and is_known_demo_password(password) and not from_loopback(request):
            logger.warning(
                "Refused a login as %r with a published demo password from %s",
                username,
                request.META.get("REMOTE_ADDR"),
            )
            raise PermissionDenied("The demo passwords work only from this machine.")
        return super().authenticate(request, username=username, password=password, **kwargs)
