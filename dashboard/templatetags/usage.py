"""`{% monthly_usage server as usage %}`: this month's usage of a server, for its page."""

from __future__ import annotations

from typing import Any

from django import template

from hosting.models import Server, TransferQuota
from hosting.services import stats_history

register = template.Library()


@register.simple_tag
def monthly_usage(server: Server) -> dict[str, Any]:
    month = stats_history.parse_month(None)
    usage = stats_history.monthly_usage(server=server, month=month)
    allowance = usage["transfer_allowance_gib"]
    usage["transfer_pct"] = (
        min(100.0, round(100 * usage["transfer_gib"] / allowance, 1)) if allowance else 0.0
    )
    quota = TransferQuota.objects.filter(server=server, period=month.date()).first()
    usage["level"] = quota.level if quota else 0
    usage["enforced"] = bool(quota and quota.enforced)
    usage["policy"] = server.plan.transfer_policy
    usage["throttle_kbps"] = server.plan.throttle_kbps
    return usage
