from __future__ import annotations

from rest_framework import permissions

from ..access import request_access


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
