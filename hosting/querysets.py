from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

from .choices import ACTIVE_JOB_STATUSES, HostState, ServerState

if TYPE_CHECKING:
    from .access import Access


class RestrictedQuerySet(models.QuerySet):
    """A queryset that knows the path from its model to the owning customer.

    `customer_path` is the lookup to the customer id (`"customer_id"`,
    `"server__customer_id"`, ...); `None` marks a catalogue model that every
    authenticated caller may read (plans, images).
    """

    customer_path: str | None = "customer_id"

    def visible_to(self, access: Access) -> RestrictedQuerySet:
        if access.customer_ids is None or self.customer_path is None:
            return self
        return self.filter(**{f"{self.customer_path}__in": access.customer_ids})


class CustomerQuerySet(RestrictedQuerySet):
    customer_path = "id"


class CatalogQuerySet(RestrictedQuerySet):
    customer_path = None

    def visible_to(self, access: Access) -> RestrictedQuerySet:
        # customers see what they can order; the provider sees the whole catalogue
        return self if access.all_customers else self.active()

    def active(self) -> CatalogQuerySet:
        return self.filter(is_active=True)


class ServerQuerySet(RestrictedQuerySet):
    def alive(self) -> ServerQuerySet:
        return self.exclude(state=ServerState.TERMINATED)

    def with_related(self) -> ServerQuerySet:
        return self.select_related("customer", "plan", "image", "host").prefetch_related(
            "addresses"
        )


class JobQuerySet(RestrictedQuerySet):
    customer_path = "server__customer_id"

    def visible_to(self, access: Access) -> RestrictedQuerySet:
        if access.customer_ids is None:
            return self
        # Host-level jobs have no server and are staff-only.
        return self.filter(server__customer_id__in=access.customer_ids)

    def active(self) -> JobQuerySet:
        return self.filter(status__in=ACTIVE_JOB_STATUSES)


class HostQuerySet(models.QuerySet):
    def online(self) -> HostQuerySet:
        return self.filter(state=HostState.ONLINE)


class AddressQuerySet(RestrictedQuerySet):
    customer_path = "server__customer_id"
