"""The OpenAPI schema tells the truth about the API (drf-spectacular settings point here).

- `PaddockAutoSchema` documents a serializer's provider variant (hosting.api.audience)
  under the customer's name, its provider-only fields optional.
- `document_errors` (a postprocessing hook) adds the error responses every operation can
  give, with the one error shape of hosting.api.errors, makes request bodies closed
  (`additionalProperties: false`, as hosting.api.strict enforces) and bounds integer ids.

Both are generic: a new viewset or action is documented the same way without a change
here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from ..validators import NAME_FORMAT, NAME_PATTERN, OPTIONAL_NAME_PATTERN, NameValidator
from .lookups import MAX_ID

PROVIDER_ONLY = "Staff and billing tokens only: absent for customers."

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer of the API has this shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status code."},
                "code": {"type": "string", "description": "A machine-readable error code."},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "Validation errors only: each field's messages (nested "
                    "objects for nested fields).",
                    "additionalProperties": {},
                },
            },
            "required": ["status", "code", "message"],
        }
    },
    "required": ["error"],
}

# Status code, description, and which operations can give it.
ALL = frozenset({"get", "post", "put", "patch", "delete"})
WRITES = frozenset({"post", "put", "patch", "delete"})
BODIES = frozenset({"post", "put", "patch"})
ERRORS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("400", "Invalid input: a field, a filter, a page size or an unknown field.", ALL),
    ("401", "No valid credentials.", ALL),
    ("403", "The caller may not do this (role, token scope or state).", ALL),
    ("404", "No such object for this caller, or no such page.", ALL),
    ("409", "Conflicts with the current state (a job in progress, a duplicate).", WRITES),
    ("413", "The request body is too large.", BODIES),
    ("415", "The request body is not JSON.", BODIES),
    ("503", "The service is busy or a dependency is down; retry later.", ALL),
)


def documented_serializer(serializer: Any) -> Any:
    """The serializer the schema documents for `serializer`: its provider variant."""
    cls = serializer if isinstance(serializer, type) else type(serializer)
    variant = getattr(cls, "provider_variant", None)
    if variant is None or variant is cls:
        return serializer
    return variant


class PaddockAutoSchema(AutoSchema):
    def resolve_serializer(self, serializer, direction, bypass_extensions=False):
        return super().resolve_serializer(
            documented_serializer(serializer), direction, bypass_extensions
        )

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            # what DRF accepts: at least one digit, no sign below a minimum of zero
            whole = (field.max_digits or 20) - (field.decimal_places or 0)
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            fraction = rf"(?:\.\d{{1,{field.decimal_places}}})?" if field.decimal_places else ""
            schema["pattern"] = rf"^{sign}\d{{1,{whole}}}{fraction}$"
        if any(isinstance(v, NameValidator) for v in getattr(field, "validators", ())):
            pattern = OPTIONAL_NAME_PATTERN if field.allow_blank else NAME_PATTERN
            schema.update(pattern=pattern, format=NAME_FORMAT)
        elif (
            isinstance(field, serializers.CharField)
            and field.trim_whitespace
            and not field.allow_blank
            and "pattern" not in schema
            and direction == "request"
        ):
            # DRF trims, then refuses a blank: white space alone is not a value
            schema["pattern"] = r"\S"
        return schema

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        optional = getattr(getattr(serializer, "Meta", None), "provider_fields", ())
        if direction != "response":
            return schema
        for name in optional:
            prop = schema.get("properties", {}).get(name)
            if prop is not None and "$ref" not in prop:
                prop["description"] = f"{prop.get('description', '')} {PROVIDER_ONLY}".strip()
        if optional and "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in optional]
            if not schema["required"]:
                del schema["required"]
        return schema


def document_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    error_ref = {"$ref": "#/components/schemas/Error"}
    for name, schema in schemas.items():
        if name.endswith("Request") and schema.get("type") == "object":
            schema["additionalProperties"] = False
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ALL:
                continue
            responses = operation.setdefault("responses", {})
            for code, description, methods in ERRORS:
                if method not in methods:
                    continue
                response = responses.setdefault(code, {"description": description})
                response.setdefault("content", {"application/json": {"schema": error_ref}})
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    schema.update(minimum=1, maximum=MAX_ID)
    return result
