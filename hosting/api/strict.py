"""Write serializers take the fields they declare, in the JSON types the schema gives.

A body with a key the endpoint does not take (`host` or `ip` on an order, a read-only
`status`) is a 400 that names the key, not silently ignored; so is a value of another
JSON type than the schema says (`"volume_name": 0`, `"vcpus": "2"`, `"is_active": "no"`),
which DRF would otherwise coerce. The schema says the same: request bodies have
`additionalProperties: false` (hosting.api.schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import relations, serializers

UNKNOWN_FIELD = "This endpoint does not take this field."

# (field class, accepted JSON types, what the message calls it), most specific first
_JSON_TYPES: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (str,), "a decimal number in a string"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
    (relations.PrimaryKeyRelatedField, (int,), "an integer id"),
    (serializers.ListField, (list,), "a list"),
    (relations.ManyRelatedField, (list,), "a list"),
)


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value` is not of the JSON type the schema gives `field` (None when it is)."""
    if value is None:
        return None  # the field's own allow_null check answers
    for cls, types, name in _JSON_TYPES:
        if isinstance(field, cls):
            if isinstance(value, bool) and bool not in types:
                return f"Must be {name}."
            return None if isinstance(value, types) else f"Must be {name}."
    return None


def too_long(field: serializers.Field, value: Any) -> str | None:
    """The schema's maxLength counts the text as sent; DRF counts it after trimming."""
    limit: int = getattr(field, "max_length", None) or 0
    long_text = isinstance(value, str) and 0 < limit < len(value)
    if isinstance(field, serializers.CharField) and long_text:
        return f"Ensure this field has no more than {limit} characters."
    return None


class StrictFieldsMixin:
    """Rejects keys that are not writable fields of the serializer (nested ones too) and
    values of another JSON type than the field's."""

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name: field for name, field in self.fields.items() if not field.read_only}
            errors: dict[str, list[str]] = {}
            for key, value in data.items():
                field = writable.get(key)
                if field is None:
                    errors[str(key)] = [UNKNOWN_FIELD]
                elif (problem := json_type_error(field, value)) is not None or (
                    problem := too_long(field, value)
                ) is not None:
                    errors[str(key)] = [problem]
                elif (
                    isinstance(field, relations.ManyRelatedField)
                    and isinstance(value, list)
                    and any(json_type_error(field.child_relation, item) for item in value)
                ):
                    errors[str(key)] = ["Must be a list of integer ids."]
        else:
            errors = {}
        try:
            value = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if not errors:
                raise
            # report the fields' own errors (nested ones too) beside the unknown keys
            detail = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError({**detail, **errors}) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value
