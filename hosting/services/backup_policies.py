"""Backup policies: scheduled backups in a window with jitter, and their retention.

Beat calls `run_policies()` every few minutes (workers.tasks.run_backup_policies). For each
server that is on (running, stopped or paused) on a host that can back up, with a policy
(its own, else its plan's) that is enabled:
- a backup is due once per period (a day, or a week on the policy's weekday) at the
  server's own moment in the window: the window's start plus a jitter derived from the
  server and the day, so that a host's servers spread over the window and keep their
  order from one night to the next; a server busy with another job is tried again on the
  next pass, while the window lasts;
- retention keeps the newest scheduled backup of each of the last `keep_daily` days and
  of each of the last `keep_weekly` ISO weeks (and what they build on); the other
  scheduled backups are deleted. On-demand backups are never touched here.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from ..access import Caller
from ..backends import capabilities_of
from ..choices import BackupFrequency, BackupStatus, ServerState
from ..models import Backup, BackupPolicy, Server
from .errors import ServiceError

log = logging.getLogger(__name__)

ON = (ServerState.RUNNING, ServerState.STOPPED, ServerState.PAUSED)


def policy_for(server: Server) -> BackupPolicy | None:
    own = BackupPolicy.objects.filter(server=server).first()
    return own or BackupPolicy.objects.filter(plan_id=server.plan_id).first()


def period_start(policy: BackupPolicy, now: datetime) -> datetime | None:
    """When the current period's window opened; None if it has not opened yet."""
    day = now.replace(hour=policy.window_start_hour, minute=0, second=0, microsecond=0)
    if policy.frequency == BackupFrequency.WEEKLY:
        day -= timedelta(days=(day.weekday() - policy.weekday) % 7)
    elif day > now:
        day -= timedelta(days=1)
    return day if day <= now else None


def due_at(server: Server, policy: BackupPolicy, start: datetime) -> datetime:
    """The server's moment in the window that opened at `start` (stable jitter)."""
    seed = hashlib.sha256(f"{server.uuid}:{start.date()}".encode()).digest()
    jitter = int.from_bytes(seed[:8], "big") % (policy.window_hours * 3600)
    return start + timedelta(seconds=jitter)


def run_policies(now: datetime | None = None) -> dict[str, int]:
    """Start the backups that are due and apply retention; returns counts."""
    from .backups import request_backup

    now = now or timezone.now()
    started = retired = 0
    servers = (
        Server.objects.filter(state__in=ON)
        .filter(Q(backup_policy__enabled=True) | Q(plan__backup_policy__enabled=True))
        .select_related("host", "plan")
    )
    for server in servers:
        policy = policy_for(server)
        if policy is None or not policy.enabled or server.host is None:
            continue
        if "backup" not in (capabilities_of(server.host) or ()):
            continue
        retired += apply_retention(server, policy, now)
        start = period_start(policy, now)
        if start is None or now < due_at(server, policy, start):
            continue
        if now > start + timedelta(hours=policy.window_hours):
            continue  # the window closed before the server was free: next period
        if Backup.objects.filter(server=server, scheduled=True, created_at__gte=start).exists():
            continue
        try:
            request_backup(server=server, caller=Caller.system(), note="scheduled", scheduled=True)
        except ServiceError as exc:  # busy with another job: the next pass tries again
            log.info("scheduled backup of %s not started: %s", server, exc.message)
            continue
        started += 1
    return {"started": started, "retired": retired}


def kept(backups: list[Backup], policy: BackupPolicy, now: datetime) -> set[int]:
    """Ids of the scheduled backups retention keeps (before adding what they build on)."""
    keep: set[int] = set()
    newest_first = sorted(backups, key=lambda b: b.created_at, reverse=True)
    days: dict = {}
    weeks: dict = {}
    for b in newest_first:
        days.setdefault(b.created_at.date(), b)
        weeks.setdefault(b.created_at.isocalendar()[:2], b)
    today = now.date()
    for day, b in days.items():
        if (today - day).days < policy.keep_daily:
            keep.add(b.pk)
    for b in list(weeks.values())[: policy.keep_weekly]:
        keep.add(b.pk)
    return keep


def apply_retention(server: Server, policy: BackupPolicy, now: datetime) -> int:
    from .backups import remove_backups

    backups = list(
        Backup.objects.filter(server=server, scheduled=True, status=BackupStatus.COMPLETE)
    )
    if not backups:
        return 0
    by_id = {b.pk: b for b in Backup.objects.filter(server=server)}
    protected = set()
    for pk in kept(backups, policy, now):
        link: Backup | None = by_id[pk]
        while link is not None:  # a kept incremental keeps its chain
            protected.add(link.pk)
            link = by_id.get(link.parent_id) if link.parent_id else None
    has_children = {b.parent_id for b in by_id.values() if b.parent_id}
    doomed = [
        b
        for b in sorted(backups, key=lambda b: b.created_at, reverse=True)
        if b.pk not in protected and b.pk not in has_children
    ]
    # leaves first; a parent whose children all went is retired on a later pass
    return remove_backups(doomed, reason="retention")
