"""Backup policies: due once per period at a jittered moment of the window; retention
keeps N daily and M weekly scheduled backups and what they build on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hosting.choices import BackupFrequency, BackupKind, BackupStatus, JobKind
from hosting.models import Backup, BackupPolicy, Job
from hosting.services import backup_policies as policies

from .factories import ServerFactory

pytestmark = pytest.mark.django_db

NIGHT = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def qemu_server(server):
    server.host.libvirt_uri = "qemu+tcp://192.0.2.10/system"
    server.host.save()
    return server


def test_due_moments_spread_over_the_window_and_stay_put(qemu_server, plan, customer):
    policy = BackupPolicy.objects.create(plan=plan, window_start_hour=2, window_hours=4)
    start = NIGHT.replace(hour=2)
    others = [ServerFactory(customer=customer, plan=plan, host=qemu_server.host) for _ in range(20)]
    moments = [policies.due_at(s, policy, start) for s in [qemu_server, *others]]
    assert all(start <= m < start + timedelta(hours=4) for m in moments)
    assert len({m.replace(second=0) for m in moments}) > 10  # not all at once
    assert policies.due_at(qemu_server, policy, start) == moments[0]  # stable


def test_a_backup_is_started_once_per_period_at_its_moment(qemu_server, plan):
    policy = BackupPolicy.objects.create(plan=plan, window_start_hour=2, window_hours=4)
    start = NIGHT.replace(hour=2)
    due = policies.due_at(qemu_server, policy, start)
    assert policies.run_policies(due - timedelta(seconds=1))["started"] == 0
    assert policies.run_policies(due)["started"] == 1
    backup = Backup.objects.get()
    assert backup.scheduled and backup.note == "scheduled"
    assert Job.objects.get().kind == JobKind.BACKUP
    Job.objects.update(status="succeeded")
    assert policies.run_policies(due + timedelta(minutes=5))["started"] == 0  # done today
    # scheduled backups take no slot of the plan
    assert Backup.objects.counted().count() == 0


def test_weekly_policy_waits_for_its_weekday(qemu_server, plan):
    BackupPolicy.objects.create(
        server=qemu_server, frequency=BackupFrequency.WEEKLY, weekday=4, window_hours=1
    )
    start = policies.period_start(qemu_server.backup_policy, NIGHT.replace(hour=5))
    assert start is not None and start.weekday() == 4 and start < NIGHT


def test_a_server_policy_overrides_the_plans(qemu_server, plan):
    BackupPolicy.objects.create(plan=plan)
    own = BackupPolicy.objects.create(server=qemu_server, enabled=False)
    assert policies.policy_for(qemu_server) == own
    assert policies.run_policies(NIGHT.replace(hour=5, minute=59))["started"] == 0


def test_retention_keeps_daily_and_weekly_and_their_chains(qemu_server, settings, tmp_path):
    settings.BACKUP_STORE = str(tmp_path)
    policy = BackupPolicy(keep_daily=3, keep_weekly=2)
    now = NIGHT
    made = []
    parent = None
    for days_ago in range(20, -1, -1):  # one a day for three weeks, chains of 7
        kind = BackupKind.FULL if days_ago % 7 == 6 else BackupKind.INCREMENTAL
        parent = None if kind == BackupKind.FULL else parent
        parent = Backup.objects.create(
            server=qemu_server, customer=qemu_server.customer, kind=kind, parent=parent,
            status=BackupStatus.COMPLETE, scheduled=True,
        )  # fmt: skip
        Backup.objects.filter(pk=parent.pk).update(created_at=now - timedelta(days=days_ago))
        made.append(parent.pk)
    on_demand = Backup.objects.create(
        server=qemu_server, customer=qemu_server.customer, status=BackupStatus.COMPLETE
    )
    for _ in range(10):  # leaves go first, their parents on later passes
        policies.apply_retention(qemu_server, policy, now)
    left = set(Backup.objects.values_list("pk", flat=True))
    keep = policies.kept(list(Backup.objects.filter(scheduled=True)), policy, now)
    assert on_demand.pk in left
    # the last 3 days and the newest of the last 2 weeks, with the chains they need
    assert {made[-1], made[-2], made[-3]} <= keep <= left
    for pk in left - {on_demand.pk}:
        b = Backup.objects.get(pk=pk)
        assert b.parent_id is None or b.parent_id in left
    assert len(left) < len(made)
