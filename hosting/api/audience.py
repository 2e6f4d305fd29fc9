"""Customers and providers see different things (DESIGN convention 15).

A provider (staff, or a billing token: an Access for all customers) reads the full
records: host names, libvirt domain names, job logs, who asked, the raw error texts.
A customer reads `customer_message(...)` of errors and state messages, and no host,
log, staff username or image file path. The customer variant is the default: a
serializer used without a request is customer-safe.
"""

from __future__ import annotations

from typing import Any

from ..access import request_access
from ..services.public_messages import customer_message


def for_provider(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and request_access(request).all_customers


def serializer_for(request: Any, customer_class: type, provider_class: type) -> type:
    """The serializer class for the caller of `request`."""
    return provider_class if request_access(request).all_customers else customer_class


class PublicTextMixin:
    """Passes `public_text_fields` through customer_message(), with the object's host and
    target host (or the `hosts` of the context) as names to hide."""

    public_text_fields: tuple[str, ...] = ()
    context: dict[str, Any]

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)  # type: ignore[misc]
        if self.public_text_fields:
            hosts = self.context.get("hosts")
            if hosts is None:  # the object's host, and a migration's target
                found = (getattr(instance, f, None) for f in ("host", "target_host"))
                hosts = [host.name for host in found if host is not None]
            for name in self.public_text_fields:
                if name in data:
                    data[name] = customer_message(data[name], hosts=hosts)
        return data
