"""Monthly transfer allowances (Plan.transfer_gib, in + out, from the hour rollups).

`check_transfer()` (beat, every few minutes): a server that reaches 80 % of its plan's
allowance in the month gets a notice (shown on its page) and the audit event
`server.transfer_warning`; at 100 % `server.transfer_exceeded`, and the plan's
`transfer_policy` applies: throttle (each direction of its interfaces limited to
`throttle_kbps` with libvirt QoS, by a task on the host's queue) or suspend (the
suspension job, as billing would ask). A new month lifts it (the throttle removed, the
quota's own suspension unsuspended), as does `lift_transfer_limit()` for an admin. A
suspension that billing or an admin asked for (the server's last suspension job has a
requester) is theirs to lift, never the quota's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from ..access import Caller
from ..choices import JobKind, ServerState, TransferPolicy
from ..models import Server, ServerStatsHour, TransferQuota
from . import audit, dispatch
from .errors import Conflict
from .stats_history import GIB

log = logging.getLogger(__name__)

LEVELS = (100, 80)


@dataclass
class QuotaReport:
    warned: list[int] = field(default_factory=list)  # server ids
    exceeded: list[int] = field(default_factory=list)
    lifted: list[int] = field(default_factory=list)


def month_start(now: datetime) -> date:
    return date(now.year, now.month, 1)


def level_of(used_bytes: int, allowance_gib: float) -> int:
    """The highest notice level (0, 80, 100) that `used_bytes` reaches."""
    if allowance_gib <= 0:
        return 0
    pct = 100 * used_bytes / (allowance_gib * GIB)
    return next((level for level in LEVELS if pct >= level), 0)


def check_transfer(*, now: datetime | None = None) -> QuotaReport:
    now = now or timezone.now()
    period = month_start(now)
    start = datetime(period.year, period.month, 1, tzinfo=now.tzinfo)
    report = QuotaReport()
    for quota in TransferQuota.objects.filter(period__lt=period).select_related("server"):
        try:
            _lift(quota, period=period, reason="a new month")
        except Conflict as exc:  # its unsuspension must wait (another job runs): next pass
            log.info("Transfer limit of server %s not lifted yet: %s", quota.server_id, exc)
            continue
        report.lifted.append(quota.server_id)
    used = dict(
        ServerStatsHour.objects.filter(bucket__gte=start, bucket__lte=now)
        .values("server_id")
        .annotate(used=Sum(F("net_rx_bytes") + F("net_tx_bytes")))
        .values_list("server_id", "used")
    )
    servers = (
        Server.objects.filter(pk__in=list(used))
        .exclude(state=ServerState.TERMINATED)
        .select_related("plan", "host")
    )
    for server in servers:
        level = level_of(used[server.pk] or 0, server.plan.transfer_gib)
        if level and _raise_level(server, level=level, used=used[server.pk], period=period):
            (report.exceeded if level == 100 else report.warned).append(server.pk)
    return report


def _raise_level(server: Server, *, level: int, used: int, period: date) -> bool:
    """Record a new, higher level and act on it; False when it was reached already."""
    with transaction.atomic():
        quota, _ = TransferQuota.objects.select_for_update().get_or_create(
            server=server, defaults={"period": period}
        )
        quota.used_bytes = used
        if quota.level >= level:
            quota.save(update_fields=["used_bytes", "updated_at"])
            return False
        quota.level = level
        details = {
            "period": f"{period:%Y-%m}",
            "used_gib": round(used / GIB, 3),
            "allowance_gib": server.plan.transfer_gib,
            "level": level,
        }
        if level == 100:
            details["policy"] = server.plan.transfer_policy
            quota.enforced = _enforce(server)
        quota.save()
        action = "server.transfer_exceeded" if level == 100 else "server.transfer_warning"
        audit.record(action=action, target=server, details=details)
    return True


def _enforce(server: Server) -> bool:
    policy = server.plan.transfer_policy
    if policy == TransferPolicy.THROTTLE and server.host_id is not None:
        queue_bandwidth(server, server.plan.throttle_kbps)
        return True
    if policy == TransferPolicy.SUSPEND and not server.suspended:
        from .servers import request_action

        request_action(server=server, action=JobKind.SUSPEND, caller=Caller.system())
        return True
    return False


def queue_bandwidth(server: Server, kbps: int | None) -> None:
    """Set (or with None, remove) the server's interface limit on its host, by a task on
    the host's queue once this transaction commits."""
    host = server.host
    if host is None:
        return
    transaction.on_commit(
        lambda: dispatch.send(dispatch.SET_BANDWIDTH, args=[server.pk, kbps], queue=host.queue)
    )


def suspended_by_quota(server: Server) -> bool:
    """The server is suspended, and by this module: its last suspension job was asked by
    the system (the quota's `_enforce`), not by billing or an admin."""
    if not server.suspended:
        return False
    last = server.jobs.filter(kind=JobKind.SUSPEND).order_by("-created_at", "-pk").first()
    return last is not None and last.requested_by_id is None and last.requested_via_token_id is None


def _release(quota: TransferQuota, caller: Caller) -> None:
    """Undo what the plan's policy did: the throttle removed, the quota's suspension
    lifted (raises Conflict when the server cannot be unsuspended now)."""
    server = quota.server
    if not quota.enforced:
        return
    if server.plan.transfer_policy == TransferPolicy.THROTTLE:
        queue_bandwidth(server, None)
    elif suspended_by_quota(server):
        from .servers import request_action

        request_action(server=server, action=JobKind.UNSUSPEND, caller=caller)


def _lift(quota: TransferQuota, *, period: date, reason: str) -> None:
    with transaction.atomic():
        server = quota.server
        _release(quota, Caller.system())
        was = quota.level
        quota.period, quota.level, quota.used_bytes, quota.enforced = period, 0, 0, False
        quota.save()
        if was:
            audit.record(
                action="server.transfer_lifted",
                target=server,
                details={"reason": reason, "period": f"{period:%Y-%m}"},
            )


def lift_transfer_limit(*, server: Server, caller: Caller) -> None:
    """An admin lifts the month's limit: the throttle is removed or the quota's suspension
    lifted (in the admin's name), and no notice repeats until the next month."""
    quota = TransferQuota.objects.filter(server=server).select_related("server__plan").first()
    if quota is None:
        return
    with transaction.atomic():
        _release(quota, caller)
        quota.enforced = False
        quota.level = 100  # no new notice this month
        quota.save()
        audit.record(
            action="server.transfer_lifted",
            caller=caller,
            target=server,
            details={"reason": "lifted by an admin", "period": f"{quota.period:%Y-%m}"},
        )
