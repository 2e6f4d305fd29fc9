from __future__ import annotations

from typing import Any

from django.db import models

from ..models import AuditEvent, Customer


def client_ip(request: Any) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    *,
    action: str,
    request: Any = None,
    actor: Any = None,
    token: Any = None,
    target: models.Model | None = None,
    customer: Customer | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event. `request` supplies actor, token and source IP when given."""
    if request is not None:
        actor = actor or getattr(request, "user", None)
        auth = getattr(request, "auth", None)
        token = token or (auth if hasattr(auth, "scope") else None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if customer is None and target is not None:
        customer = getattr(target, "customer_id", None) or (
            target.pk if isinstance(target, Customer) else None
        )
    customer_id = customer.pk if isinstance(customer, Customer) else customer
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_repr=(str(actor) if actor else "system") + (f" via {token}" if token else ""),
        token=token,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        customer_id=customer_id,
        source_ip=client_ip(request),
        details=details or {},
    )
