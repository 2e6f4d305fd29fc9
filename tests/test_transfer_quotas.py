"""Monthly transfer allowances (hosting/services/quotas.py): notices at 80 % and 100 %,
audit events, the plan's policy (a real libvirt QoS limit on the test driver's guest, set
by a real worker on the host's queue; or the suspension job), lifted the next month."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import libvirt
import pytest
from django.urls import reverse
from django.utils import timezone

from hosting.access import Caller
from hosting.choices import JobKind, JobStatus, TransferPolicy
from hosting.models import AuditEvent, Job, ServerStatsHour, TransferQuota
from hosting.services.quotas import check_transfer, level_of, lift_transfer_limit
from hosting.services.servers import request_action

GIB = 1024**3


@pytest.fixture
def guest(server, host):
    """The server's domain on the test driver, running, with one interface (its MAC)."""
    server.plan.transfer_gib = 1
    server.plan.throttle_kbps = 800
    server.plan.save()
    conn = libvirt.open(host.libvirt_uri)
    dom = conn.defineXML(
        f"<domain type='test'><name>{server.domain_name}</name>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
        "<devices><interface type='network'><source network='default'/>"
        f"<mac address='{server.mac_address}'/></interface></devices></domain>"
    )
    dom.create()
    yield dom
    conn.close()


def transfer(server, gib: float, when: datetime | None = None) -> None:
    bucket = (when or timezone.now()).replace(minute=0, second=0, microsecond=0)
    ServerStatsHour.objects.create(
        server=server, bucket=bucket, samples=1, seconds=3600, net_tx_bytes=int(gib * GIB)
    )


def inbound_average(dom, mac: str) -> int:
    return dom.interfaceParameters(mac, 0)["inbound.average"]


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_levels():
    assert [level_of(math.ceil(p * GIB / 100), 1) for p in (0, 79.9, 80, 99.9, 100, 250)] == [
        0,
        0,
        80,
        80,
        100,
        100,
    ]
    assert level_of(10 * GIB, 0) == 0  # no allowance: nothing to count against


@pytest.mark.django_db
def test_eighty_percent_tells_the_customer_once(server, guest, client, owner):
    # given 0.85 GiB sent this month of a 1 GiB allowance
    transfer(server, 0.85)

    # when the check runs twice
    first = check_transfer()
    second = check_transfer()

    # then one warning, one audit event, a notice on the server page, no limit
    assert first.warned == [server.pk] and not second.warned
    events = AuditEvent.objects.filter(action="server.transfer_warning")
    assert events.count() == 1
    assert events.get().details["level"] == 80
    assert TransferQuota.objects.get(server=server).level == 80
    assert inbound_average(guest, server.mac_address) == 0
    client.force_login(owner)
    page = client.get(reverse("dashboard:server-detail", kwargs={"uuid": server.uuid}))
    assert 'data-transfer-notice="80"' in page.content.decode()


def test_past_the_allowance_the_interface_is_throttled_until_next_month(
    server, guest, celery_worker, client, owner
):
    # given 1.2 GiB sent this month on a throttling plan
    transfer(server, 1.2)

    # when the check runs (a worker on the host's queue applies the policy)
    report = check_transfer()

    # then the guest's interface is limited on the host (800 kbit/s = 100 KB/s)
    assert report.exceeded == [server.pk]
    assert wait_for(lambda: inbound_average(guest, server.mac_address) == 100)
    event = AuditEvent.objects.get(action="server.transfer_exceeded")
    assert event.details["policy"] == TransferPolicy.THROTTLE
    assert TransferQuota.objects.get(server=server).enforced
    client.force_login(owner)
    page = client.get(reverse("dashboard:server-detail", kwargs={"uuid": server.uuid}))
    assert 'data-transfer-notice="100"' in page.content.decode()
    assert "limited to 800 kbit/s" in page.content.decode()

    # and when the next month begins, the limit is lifted
    now = timezone.now()
    next_month = (now.replace(day=28) + timedelta(days=5)).replace(day=1, hour=0, minute=5)
    lifted = check_transfer(now=next_month)
    assert lifted.lifted == [server.pk]
    assert wait_for(lambda: inbound_average(guest, server.mac_address) == 0)
    assert AuditEvent.objects.filter(action="server.transfer_lifted").exists()
    assert TransferQuota.objects.get(server=server).level == 0


def test_an_admin_lifts_the_throttle_for_the_rest_of_the_month(server, guest, celery_worker, staff):
    # given a throttled server
    transfer(server, 1.5)
    check_transfer()
    assert wait_for(lambda: inbound_average(guest, server.mac_address) == 100)

    # when an admin lifts it
    lift_transfer_limit(server=server, caller=Caller(user=staff))

    # then the limit is gone and stays gone this month
    assert wait_for(lambda: inbound_average(guest, server.mac_address) == 0)
    assert not check_transfer().exceeded
    event = AuditEvent.objects.get(action="server.transfer_lifted")
    assert event.actor == staff


@pytest.mark.django_db
def test_a_suspending_plan_suspends_the_server(server, django_capture_on_commit_callbacks):
    # given a plan whose policy is to suspend, and last month's traffic (not counted)
    server.plan.transfer_gib = 1
    server.plan.transfer_policy = TransferPolicy.SUSPEND
    server.plan.save()
    transfer(server, 5, when=datetime(2020, 1, 1, tzinfo=UTC))
    assert not check_transfer().exceeded
    transfer(server, 1.0)

    # when
    with django_capture_on_commit_callbacks(execute=False):
        report = check_transfer()

    # then the suspension is asked for, as billing would
    assert report.exceeded == [server.pk]
    server.refresh_from_db()
    assert server.suspended
    assert Job.objects.filter(server=server, kind=JobKind.SUSPEND).exists()


def finish_jobs(server) -> None:
    """The queued jobs done (their runners are not the point here)."""
    Job.objects.filter(server=server).exclude(status=JobStatus.SUCCEEDED).update(
        status=JobStatus.SUCCEEDED, finished_at=timezone.now()
    )


@pytest.fixture
def suspended_by_quota(server, django_capture_on_commit_callbacks):
    """A server its plan's transfer policy suspended this month, the suspension done."""
    server.plan.transfer_gib = 1
    server.plan.transfer_policy = TransferPolicy.SUSPEND
    server.plan.save()
    transfer(server, 1.0)
    with django_capture_on_commit_callbacks(execute=False):
        assert check_transfer().exceeded == [server.pk]
    server.refresh_from_db()
    assert server.suspended
    return server


def next_month() -> datetime:
    return (timezone.now().replace(day=1) + timedelta(days=32)).replace(day=1)


def test_next_month_lifts_the_quotas_suspension(
    suspended_by_quota, django_capture_on_commit_callbacks
):
    server = suspended_by_quota
    # given the suspension job still running: the lift waits for the next pass
    with django_capture_on_commit_callbacks(execute=False):
        assert check_transfer(now=next_month()).lifted == []
    server.refresh_from_db()
    assert server.suspended

    # when it has finished and the next pass comes
    finish_jobs(server)
    with django_capture_on_commit_callbacks(execute=False):
        report = check_transfer(now=next_month())

    # then the server is unsuspended by the system, and the lift is audited
    assert report.lifted == [server.pk]
    server.refresh_from_db()
    assert not server.suspended
    unsuspend = Job.objects.get(server=server, kind=JobKind.UNSUSPEND)
    assert unsuspend.requested_by is None
    assert AuditEvent.objects.filter(action="server.transfer_lifted", target_id=str(server.pk))
    assert TransferQuota.objects.get(server=server).level == 0


def test_next_month_leaves_a_suspension_billing_asked_for(
    suspended_by_quota, staff, django_capture_on_commit_callbacks
):
    # given billing unsuspended the server, then suspended it for its own reasons
    server = suspended_by_quota
    with django_capture_on_commit_callbacks(execute=False):
        for action in (JobKind.UNSUSPEND, JobKind.SUSPEND):
            finish_jobs(server)
            request_action(server=server, action=action, caller=Caller(user=staff))
    finish_jobs(server)

    # when the next month begins
    with django_capture_on_commit_callbacks(execute=False):
        report = check_transfer(now=next_month())

    # then the quota is reset, but the suspension is billing's to lift
    assert report.lifted == [server.pk]
    server.refresh_from_db()
    assert server.suspended
    assert Job.objects.filter(server=server, kind=JobKind.UNSUSPEND).count() == 1


def test_an_admin_lifts_the_quotas_suspension_in_their_name(
    suspended_by_quota, staff, django_capture_on_commit_callbacks
):
    server = suspended_by_quota
    finish_jobs(server)
    with django_capture_on_commit_callbacks(execute=False):
        lift_transfer_limit(server=server, caller=Caller(user=staff))
    server.refresh_from_db()
    assert not server.suspended
    assert Job.objects.get(server=server, kind=JobKind.UNSUSPEND).requested_by == staff
