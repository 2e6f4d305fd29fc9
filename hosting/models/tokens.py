from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..choices import TokenScope
from ..querysets import RestrictedQuerySet
from ..validators import validate_name


class APIToken(models.Model):
    """An API token. Only a SHA-256 digest of the secret is stored; the key is shown once.

    A token reads `pdk_<prefix>_<secret>`; `prefix` finds the row, the digest proves it.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    customer = models.ForeignKey(
        "hosting.Customer",
        on_delete=models.CASCADE,
        related_name="api_tokens",
        null=True,
        blank=True,
        help_text="The customer a customer- or read-scoped token acts for.",
    )
    name = models.CharField(max_length=100, blank=True, default="", validators=[validate_name])
    scope = models.CharField(max_length=16, choices=TokenScope.choices)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"pdk_{self.prefix}_… ({self.scope})"

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
