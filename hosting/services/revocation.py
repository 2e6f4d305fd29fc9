"""Revocation events: what ends a user's right to watch live data closes their sockets.

The WebSocket consumers (dashboard.consumers) check access once, when a socket subscribes,
and keep the answer in memory; a sample costs no database query. Whatever can withdraw
that access sends `access.changed` to the user's group (`user.<id>`), after commit, and
every socket of the user re-checks and closes if it may no longer watch:
- a membership removed (or moved to another customer);
- a user deactivated or losing staff status (any save but a login's last_login update);
- a customer suspended (every member of the customer is told).
The receivers are connected in HostingConfig.ready().
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from ..choices import CustomerStatus
from ..models import Customer, Membership
from .events import publish_access_changed

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def membership_removed(sender: Any, instance: Membership, **kwargs: Any) -> None:
    publish_access_changed([instance.user_id], "membership removed")


def membership_saved(sender: Any, instance: Membership, created: bool, **kwargs: Any) -> None:
    if not created:  # a membership changed in place may now point elsewhere
        publish_access_changed([instance.user_id], "membership changed")


def user_saved(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    publish_access_changed([instance.pk], "user changed")


def customer_saved(sender: Any, instance: Customer, created: bool, **kwargs: Any) -> None:
    if created or instance.status == CustomerStatus.ACTIVE:
        return
    members = list(Membership.objects.filter(customer=instance).values_list("user_id", flat=True))
    publish_access_changed(members, f"customer {instance.status}")


def connect() -> None:
    post_delete.connect(membership_removed, sender=Membership, dispatch_uid="revoke-membership")
    post_save.connect(membership_saved, sender=Membership, dispatch_uid="revoke-membership-save")
    post_save.connect(user_saved, sender=get_user_model(), dispatch_uid="revoke-user")
    post_save.connect(customer_saved, sender=Customer, dispatch_uid="revoke-customer")
