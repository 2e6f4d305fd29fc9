"""Who may see what: the single place where tenancy is decided.

An `Access` says which customers a caller acts for (`customer_ids is None` means every
customer: staff, or a billing token) and whether it may write. Every queryset that a view
or consumer serves goes through `RestrictedQuerySet.visible_to(access)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .choices import TokenScope

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

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


@dataclass(frozen=True)
class Caller:
    """Who asks a service for something: a user (through a session or an API token), the
    token, and the address the request came from; `Caller()` is the system itself (beat,
    reconciliation, management commands). Services take it as a value, decide from it
    what the caller may do, and name it in the audit trail."""

    user: User | None = None
    token: APIToken | None = None
    address: str | None = None
    # Paddock itself (beat, reconciliation, management commands): never an anonymous user
    is_system: bool = False
    _access: list[Access] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def system(cls) -> Caller:
        return cls(is_system=True)

    @property
    def access(self) -> Access:
        if self.is_system:
            return Access(customer_ids=None, can_write=True, is_staff=True)
        if not self._access:
            self._access.append(access_for(self.user, self.token))
        return self._access[0]

    @property
    def is_provider(self) -> bool:
        """Acts for every customer and may write: staff, a billing token, the system."""
        return self.access.all_customers and self.access.can_write

    def __str__(self) -> str:
        if self.is_system:
            return "system"
        name = self.user.get_username() if self.user is not None else "anonymous"
        return f"{name} via {self.token}" if self.token is not None else name


def caller_from_request(request: HttpRequest) -> Caller:
    """The Caller of a Django or DRF request (computed once per request)."""
    cached = getattr(request, "_paddock_caller", None)
    if cached is None:
        user = getattr(request, "user", None)
        auth = getattr(request, "auth", None)
        cached = Caller(
            user=user if user is not None and user.is_authenticated else None,
            token=auth if hasattr(auth, "scope") else None,
            address=request.META.get("REMOTE_ADDR") or None,
        )
        request._paddock_caller = cached  # type: ignore[attr-defined]
    return cached


def access_for(user: Any, token: APIToken | None = None) -> Access:
    """The access of a user, narrowed by the API token it authenticated with, if any."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Access.nothing()
    if token is not None:
        from .services.token_auth import customers_of

        # a token acts only while its user may: still a member of its active customer,
        # still staff for a billing token (hosting/services/token_auth.py)
        return Access(
            customer_ids=customers_of(token),
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
    return caller_from_request(request).access


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
