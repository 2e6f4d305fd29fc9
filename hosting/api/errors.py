"""One JSON shape for every API error.

    {"error": {"status": 409, "code": "conflict", "message": "...", "fields": {...}}}

`fields` is present for validation errors and maps each field to its messages.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from ..services.errors import Conflict, ServiceError
from ..states import IllegalTransition


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, IllegalTransition | Conflict):
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
    return response
