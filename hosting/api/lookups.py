"""Path ids that cannot name a row are a 404, never a database error (a 500)."""

from __future__ import annotations

from typing import Any

from django.http import Http404

# the largest id a 64-bit primary key holds; the schema says the same (hosting.api.schema)
MAX_ID = 2**63 - 1


def parse_id(value: Any) -> int:
    """The integer id in a path, or Http404 (`null,null`, `1.5`, `-1`, 2**64 ...)."""
    text = str(value)
    if not text.isascii() or not text.isdigit():
        raise Http404("No such object.")
    number = int(text)
    if not 1 <= number <= MAX_ID:
        raise Http404("No such object.")
    return number


class IntegerLookupMixin:
    """For viewsets looked up by an integer primary key."""

    kwargs: dict[str, Any]
    lookup_field = "pk"

    def checked_lookup(self) -> int:
        return parse_id(self.kwargs[getattr(self, "lookup_url_kwarg", None) or self.lookup_field])

    def get_object(self):
        self.kwargs[getattr(self, "lookup_url_kwarg", None) or self.lookup_field] = (
            self.checked_lookup()
        )
        return super().get_object()  # type: ignore[misc]
