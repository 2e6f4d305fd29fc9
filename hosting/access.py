"""Who may see what: the single place where tenancy is decided.

An `Access` says which customers a caller acts for (`customer_ids is None` means every
customer: staff, or a billing token) and whether it may write. Every queryset that a view
or consumer serves goes through `RestrictedQuerySet.visible_to(access)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .choices import TokenScope

if TYPE_CHECKING:
    from .models import APIToken


@dataclass(frozen=True)
class Access:
    customer_ids: frozenset[int] | None
    can_write: bool = True
    is_staff: bool = False
    token: APIToken | None = None

    @property
    def all_customers(self) -> bool:
        return self.customer_ids is None

    def allows_customer(self, customer_id: int | None) -> bool:
        return self.customer_ids is None or customer_id in self.customer_ids

    @classmethod
    def nothing(cls) -> Access:
        return cls(customer_ids=frozenset(), can_write=False)


def access_for(user: Any, token: APIToken | None = None) -> Access:
    """The access of a user, narrowed by the API token it authenticated with, if any."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Access.nothing()
    if token is not None:
        if token.scope == TokenScope.BILLING:
            return Access(customer_ids=None, can_write=True, is_staff=False, token=token)
        ids = frozenset([token.customer_id]) if token.customer_id else None
        if ids is None and not user.is_staff:
            ids = _member_customer_ids(user)
        return Access(
            customer_ids=ids,
            can_write=token.scope != TokenScope.READ,
            is_staff=False,
            token=token,
        )
    if user.is_staff:
        return Access(customer_ids=None, can_write=True, is_staff=True)
    return Access(customer_ids=_member_customer_ids(user), can_write=True)


def request_access(request: Any) -> Access:
    """The caller's Access for a Django or DRF request (narrowed by its API token, if it
    authenticated with one), computed once per request."""
    cached = getattr(request, "_paddock_access", None)
    if cached is None:
        auth = getattr(request, "auth", None)
        token = auth if hasattr(auth, "scope") else None
        cached = access_for(getattr(request, "user", None), token)
        request._paddock_access = cached
    return cached


def _member_customer_ids(user: Any) -> frozenset[int]:
    cached = getattr(user, "_paddock_customer_ids", None)
    if cached is None:
        from .models import Membership

        cached = frozenset(
            Membership.objects.filter(user=user, customer__status="active").values_list(
                "customer_id", flat=True
            )
        )
        user._paddock_customer_ids = cached
    return cached
