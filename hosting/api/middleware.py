"""Every answer under /api/v1/ has the API's error shape, also those DRF never sees.

- A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413 before any view
  reads it (Django would raise RequestDataTooBig, which DRF does not handle).
- Django's own error pages (a path no route matches, a 500) become the JSON error shape
  instead of HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import error_body

API_PREFIX = "/api/v"

CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "server_error",
}


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def error_response(status: int, message: str | None = None) -> JsonResponse:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = CODES.get(status, "error")
    return JsonResponse(error_body(status, code, message or f"{phrase}."), status=status)


def too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(413, f"The request body is larger than {limit} bytes.")


class APIErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api(request):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return too_large()
        response = self.get_response(request)
        content_type = response.get("Content-Type", "")
        if response.status_code >= 400 and "json" not in content_type:
            return error_response(response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if is_api(request) and isinstance(exception, RequestDataTooBig):
            return too_large()
        return None
