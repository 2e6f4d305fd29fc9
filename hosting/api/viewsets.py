"""The scoped base viewset: every object an API view serves passes through here."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets

from ..access import Access, caller_from_request
from ..services import audit
from .permissions import request_access


class ScopedViewSetMixin:
    """Restricts `queryset` to what the caller may see, so others' objects are 404.

    Serializer fields that point at other objects (customer, ssh_keys) get the same
    restriction, so a body cannot name another customer's object either.
    """

    scoped_fields: tuple[str, ...] = ("customer", "ssh_keys")
    request: Any

    @property
    def access(self) -> Access:
        return request_access(self.request)

    def get_queryset(self):
        return super().get_queryset().visible_to(self.access)

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        fields = getattr(serializer, "fields", {})
        for name in self.scoped_fields:
            field = fields.get(name)
            if field is None or field.read_only:
                continue
            target = getattr(field, "child_relation", field)
            target.queryset = target.queryset.visible_to(self.access)
        return serializer


class AuditedModelMixin:
    """Writes an AuditEvent for plain model writes (catalogue and hosts); resources
    whose writes go through services are audited by those services."""

    request: Any

    def _audit(self, verb: str, instance, **details) -> None:
        audit.record(
            action=f"{instance._meta.model_name}.{verb}",
            caller=caller_from_request(self.request),
            target=instance,
            details=details,
        )

    def perform_create(self, serializer):
        super().perform_create(serializer)
        self._audit("create", serializer.instance)

    def perform_update(self, serializer):
        changed = sorted(serializer.validated_data)
        super().perform_update(serializer)
        self._audit("update", serializer.instance, fields=changed)

    def perform_destroy(self, instance):
        self._audit("delete", instance)
        super().perform_destroy(instance)


class ScopedModelViewSet(ScopedViewSetMixin, viewsets.ModelViewSet):
    pass


class ScopedReadOnlyViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass
