from __future__ import annotations

from django.db import models


class SeededRow(models.Model):
    """A row the demo seed made (or found exactly as it would have made it), and what the
    seed last wrote into it: the seed writes a field again only while it still holds that
    value, so that what an admin changed stays as the admin left it (devtools/seeding.py).
    """

    key = models.CharField(max_length=200, unique=True, help_text="e.g. plan:Tiny")
    model = models.CharField(max_length=100, help_text="app_label.model_name")
    object_id = models.PositiveBigIntegerField()
    values = models.JSONField(default=dict, help_text="field -> the value the seed wrote")
    edited = models.JSONField(default=list, help_text="fields an admin changed: left alone")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
