"""A balancer's plan for one zone (hosting/services/balancer.py): the moves it chose, each
with its reason and the hosts' load before and after, kept for approval (advise mode) or
as the record of what it asked for (apply mode)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..choices import BalanceMode, BalancePlanStatus


class BalancePlan(models.Model):
    zone = models.CharField(max_length=50, blank=True, default="", db_index=True)
    mode = models.CharField(max_length=16, choices=BalanceMode.choices)
    status = models.CharField(
        max_length=16, choices=BalancePlanStatus.choices, default=BalancePlanStatus.PROPOSED
    )
    # the spread of host load (max - min, 0..1) before and, as planned, after the moves
    spread_before = models.FloatField()
    spread_after = models.FloatField()
    # [{server, server_id, source, source_id, target, target_id, memory_mib, reason,
    #   before: {host: load}, after: {host: load}}], in the order they are applied
    moves = models.JSONField(default=list)
    # host name -> load (0..1) before the moves, and as planned after them
    loads_before = models.JSONField(default=dict)
    loads_after = models.JSONField(default=dict)
    # once applied: [{server, job}] or [{server, error}] per move
    outcome = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_balanceplan", "Can approve and reject balancing plans")]

    def __str__(self) -> str:
        return f"Plan #{self.pk} for {self.zone or '(no zone)'} ({self.status})"

    @property
    def gib_moved(self) -> float:
        return sum(m.get("memory_mib", 0) for m in self.moves) / 1024
