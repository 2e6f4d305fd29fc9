from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from ..access import Caller
from ..choices import TokenScope
from ..models import APIToken, Customer
from . import audit
from .errors import ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def digest_of(key: str) -> str:
    """The stored form of a key (its SHA-256 digest)."""
    return _digest(key)


def key_prefix(key: str) -> str | None:
    """The prefix that finds a key's row, or None when `key` is not shaped like a key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "pdk" or not parts[1]:
        return None
    return parts[1]


def find_token(key: str) -> APIToken | None:
    prefix = key_prefix(key)
    if prefix is None:
        return None
    token = APIToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(key)):
        return None
    return token


@transaction.atomic
def issue_token(
    *,
    user: User,
    scope: str,
    customer: Customer | None = None,
    name: str = "",
    expires_at: datetime | None = None,
    caller: Caller | None = None,
) -> tuple[APIToken, str]:
    """Create a token for `user` and return it with its key; the key is not stored and not
    shown again. `caller` is who asked (the user itself, or staff in the admin)."""
    if scope not in TokenScope.values:
        raise ServiceError(f"Unknown scope {scope!r}.", field="scope")
    if (
        caller is not None
        and not caller.is_system
        and caller.user != user
        and not (caller.user is not None and caller.user.is_superuser)
    ):
        # a token acts with its holder's rights: only a superuser may hand out another's
        raise ServiceError("Only a superuser can issue tokens for another user.", field="user")
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
        caller=caller or Caller(user=user),
        target=token,
        customer=token.customer_id,
        details={"scope": scope, "name": name},
    )
    return token, key


@transaction.atomic
def revoke_token(*, token: APIToken, caller: Caller) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(action="token.revoke", caller=caller, target=token, customer=token.customer_id)
