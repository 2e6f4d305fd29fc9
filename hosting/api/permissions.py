from __future__ import annotations

from rest_framework import permissions

from ..access import caller_from_request, request_access
from ..permissions import caller_may, is_staff_session


class TokenScopePermission(permissions.BasePermission):
    """Authenticated callers only; read-scoped tokens may not write."""

    message = "This token's scope does not allow writes."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return request_access(request).can_write


class StaffOnly(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(
            request.user
            and request.user.is_authenticated
            and request.user.is_staff
            and request_access(request).token is None
        )


class StaffOrBillingWrites(permissions.BasePermission):
    """Reads for everyone authenticated; writes for staff sessions and billing tokens."""

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        access = request_access(request)
        return access.all_customers and access.can_write


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django's model permissions, reads included (view_<model>)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class CatalogPermission(permissions.BasePermission):
    """Everyone signed in reads the catalogue; changing it takes a staff session (no API
    token, billing tokens included) with the model's add/change/delete permission."""

    message = "Changing the catalogue needs a staff session with the model permission."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        access = request_access(request)
        return is_staff_session(request.user, access.token) and bool(
            permissions.DjangoModelPermissions().has_permission(request, view)
        )


class ProviderModelPermissions(permissions.BasePermission):
    """Writes by the provider (a staff session or a billing token) need the model's
    add/change/delete permission of the user behind them; a customer's own writes are
    scoped by hosting.access instead."""

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if not request_access(request).all_customers:
            return True
        return bool(permissions.DjangoModelPermissions().has_permission(request, view))


def action_permission(kind: str) -> type[permissions.BasePermission]:
    """A DRF permission class for one action (hosting.permissions.may_perform)."""

    class MayPerform(permissions.BasePermission):
        message = f"You may not {kind.replace('_', ' ')}."

        def has_permission(self, request, view) -> bool:
            return caller_may(caller_from_request(request), kind)

    MayPerform.__name__ = f"MayPerform_{kind}"
    return MayPerform
