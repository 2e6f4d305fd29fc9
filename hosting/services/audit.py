"""The audit trail: one event per privileged action, naming who asked and from where."""

from __future__ import annotations

from typing import Any

from django.db import models

from ..access import Caller
from ..models import AuditEvent, Customer


def record(
    *,
    action: str,
    caller: Caller | None = None,
    target: models.Model | None = None,
    customer: Customer | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event; without a caller it is the system's own doing."""
    caller = caller or Caller.system()
    if customer is None and target is not None:
        customer = getattr(target, "customer_id", None) or (
            target.pk if isinstance(target, Customer) else None
        )
    customer_id = customer.pk if isinstance(customer, Customer) else customer
    return AuditEvent.objects.create(
        action=action,
        actor=caller.user,
        actor_repr=str(caller),
        token=caller.token,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        customer_id=customer_id,
        source_ip=caller.address,
        details=details or {},
    )
