from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..choices import TokenScope
from ..models import APIToken, Customer
from . import audit
from .errors import ServiceError


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def find_token(key: str) -> APIToken | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "pdk":
        return None
    token = APIToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(key)):
        return None
    return token


@transaction.atomic
def issue_token(
    *,
    user,
    scope: str,
    customer: Customer | None = None,
    name: str = "",
    expires_at: datetime | None = None,
    request: Any = None,
) -> tuple[APIToken, str]:
    """Create a token and return it with its key; the key is not stored and not shown again."""
    if scope not in TokenScope.values:
        raise ServiceError(f"Unknown scope {scope!r}.", field="scope")
    if scope == TokenScope.BILLING and not user.is_staff:
        raise ServiceError("Only staff users can hold billing tokens.", field="scope")
    if customer is None and not user.is_staff:
        membership = user.memberships.select_related("customer").first()
        if membership is None:
            raise ServiceError("This user belongs to no customer.", field="customer")
        customer = membership.customer
    if scope == TokenScope.CUSTOMER and customer is None:
        raise ServiceError("A customer-scoped token needs a customer.", field="customer")
    if (
        customer is not None
        and not user.is_staff
        and not user.memberships.filter(customer=customer).exists()
    ):
        raise ServiceError("This user is not a member of that customer.", field="customer")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("The expiry must be in the future.", field="expires_at")
    prefix = secrets.token_hex(6)
    key = f"pdk_{prefix}_{secrets.token_urlsafe(32)}"
    token = APIToken.objects.create(
        user=user,
        customer=customer if scope != TokenScope.BILLING else None,
        scope=scope,
        name=name,
        prefix=prefix,
        digest=_digest(key),
        expires_at=expires_at,
    )
    audit.record(
        action="token.create",
        request=request,
        actor=user,
        target=token,
        customer=token.customer_id,
        details={"scope": scope, "name": name},
    )
    return token, key


@transaction.atomic
def revoke_token(*, token: APIToken, request: Any = None) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            action="token.revoke", request=request, target=token, customer=token.customer_id
        )
