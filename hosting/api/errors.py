"""One JSON shape for every API error.

    {"error": {"status": 409, "code": "conflict", "message": "...", "fields": {...}}}

`fields` is present for validation errors and maps each field to its messages.

Two requests can race past the same check (two orders of one `external_ref`, two keys of
one name): the database's unique constraint stops the second, and its IntegrityError
becomes the 409 naming the field that a duplicate gets. Any other IntegrityError is a
409 too. An OperationalError (SQLite's "database is locked", a lock
timeout or lost connection on PostgreSQL) is a 503 with Retry-After: nothing was
changed, and the same request may succeed a moment later.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, OperationalError
from django.db.models import ProtectedError, UniqueConstraint
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from ..services.errors import Conflict, NotPermitted, ServiceError
from ..states import IllegalTransition


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is busy; nothing was changed. Retry in a moment."
    default_code = "unavailable"


# Seconds a client is asked to wait after a 503.
RETRY_AFTER = 1
# API names of model fields where they differ (a customer's owner is a user row).
API_FIELD_NAMES = {
    ("auth_user", "username"): "owner",
    ("hosting_sshkey", "fingerprint"): "public_key",
}


def _unique_sets() -> list[tuple[str, str, list[str], list[str]]]:
    """(table, constraint name, columns, field names) of every unique constraint."""
    found: list[tuple[str, str, list[str], list[str]]] = []
    for model in apps.get_models():
        meta = model._meta
        for field in meta.local_fields:
            if field.unique and not field.primary_key and field.column:
                found.append((meta.db_table, "", [field.column], [field.name]))
        for constraint in meta.constraints:
            if isinstance(constraint, UniqueConstraint) and constraint.fields:
                fields = [meta.get_field(name) for name in constraint.fields]
                found.append(
                    (
                        meta.db_table,
                        constraint.name or "",
                        [str(getattr(f, "column", "")) for f in fields],
                        [f.name for f in fields],
                    )
                )
    return found


def duplicate_fields(exc: IntegrityError) -> dict[str, list[str]] | None:
    """The fields of the unique constraint that `exc` reports, with a message each, or
    None when it is not a unique violation this project knows."""
    name = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
    text = str(exc)
    for table, constraint, columns, fields in _unique_sets():
        sqlite = "UNIQUE constraint failed: " + ", ".join(f"{table}.{c}" for c in columns)
        postgres = name is not None and (
            name == constraint or (not constraint and name.startswith(f"{table}_{columns[0]}_"))
        )
        if text == sqlite or postgres:
            # the field that tells the rows apart; a customer (the owner) is not it
            column = columns[-1]
            field = API_FIELD_NAMES.get((table, column), fields[-1])
            return {field: [f"One with this {field.replace('_', ' ')} exists already."]}
    return None


def _database_error(exc: Exception) -> exceptions.APIException:
    if isinstance(exc, IntegrityError):
        fields = duplicate_fields(exc)
        if fields is not None:
            # as the check before the insert answers: a 409 naming the field
            return exceptions.ValidationError(fields, code="unique")
        return ConflictError("The request conflicts with a concurrent change; retry it.")
    return DatabaseUnavailable()


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, IntegrityError | OperationalError):
        exc = _database_error(exc)
    exc = unique_as_conflict(as_api_exception(exc))
    if isinstance(exc, NotPermitted):
        exc = exceptions.PermissionDenied(exc.message)
    elif isinstance(exc, IllegalTransition | Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, ProtectedError):
        exc = ConflictError(
            f"{len(exc.protected_objects)} object(s) still use this; it cannot be deleted."
        )
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, ServiceError):
        exc = exceptions.ValidationError({"non_field_errors": [str(exc)]})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    body: dict[str, Any] = {"status": response.status_code}
    if isinstance(exc, exceptions.ValidationError):
        body["code"] = "invalid"
        fields = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        non_field = fields.get("non_field_errors")
        body["message"] = str(non_field[0]) if non_field else "The request has invalid fields."
        body["fields"] = fields
    else:
        detail = getattr(exc, "detail", None)
        body["code"] = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        body["message"] = str(detail) if detail is not None else str(exc)
    response.data = {"error": body}
    if isinstance(exc, DatabaseUnavailable):
        response["Retry-After"] = str(RETRY_AFTER)
    return response


def as_api_exception(exc: Exception) -> Exception:
    """Django's 404 and permission errors as DRF's, so that their code and message are
    filled in (DRF converts them only inside its own handler)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def error_body(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The error shape, for answers built outside DRF (hosting.api.middleware)."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return {"error": body}


def unique_as_conflict(exc: Exception) -> Exception:
    """A body that is valid but names what exists already (a plan name, a volume name)
    is a 409 with the usual validation `fields`, not a 400."""
    if isinstance(exc, exceptions.ValidationError) and _only_code(exc.get_codes(), "unique"):
        exc.status_code = status.HTTP_409_CONFLICT
    return exc


def _only_code(codes: Any, code: str) -> bool:
    if isinstance(codes, dict):
        return bool(codes) and all(_only_code(value, code) for value in codes.values())
    if isinstance(codes, list):
        return bool(codes) and all(_only_code(value, code) for value in codes)
    return codes == code
