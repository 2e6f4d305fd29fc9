from __future__ import annotations

from django.conf import settings
from django.db import models

from ..querysets import RestrictedQuerySet


class AuditEvent(models.Model):
    """One state-changing request: who (user or token), what, on which object, from where."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_repr = models.CharField(max_length=200, blank=True, default="")
    token = models.ForeignKey("hosting.APIToken", on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    customer = models.ForeignKey(
        "hosting.Customer", on_delete=models.SET_NULL, null=True, blank=True
    )
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id} by {self.actor_repr}"
