"""History and monthly usage of a server over the API (hosting/services/stats_history.py):
the stats contract's shape, scoped like every server route, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hosting.models import ServerStatsHour, ServerStatsMinute
from hosting.services import stats_history

from .factories import ServerFactory

GIB = 1024**3


def bucket_row(model, server, bucket, **fields):
    values = {
        "samples": 30,
        "seconds": 60.0 if model is ServerStatsMinute else 3600.0,
        "cpu_pct_avg": 10.0,
        "cpu_pct_max": 20.0,
        "mem_used_mib_avg": 300,
        "mem_total_mib": 1000,
    } | fields
    return model.objects.create(server=server, bucket=bucket, **values)


def this_minute(minutes_ago: int = 0) -> datetime:
    now = timezone.now().replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


@pytest.mark.django_db
def test_the_last_hour_from_the_minute_rollups(owner_client, server):
    # given three minutes of history, one of them older than an hour
    bucket_row(ServerStatsMinute, server, this_minute(2), net_rx_bytes=60_000, cpu_pct_avg=40.0)
    bucket_row(ServerStatsMinute, server, this_minute(1), disk_wr_reqs=600, mem_used_mib_avg=None)
    bucket_row(ServerStatsMinute, server, this_minute(90), cpu_pct_avg=99.0)

    # when
    resp = owner_client.get(f"/api/v1/servers/{server.uuid}/stats/?range=1h")

    # then the contract's shape, oldest first, rates as amounts over the seconds covered
    assert resp.status_code == 200
    body = resp.json()
    assert (body["range"], body["step"]) == ("1h", 60)
    first, second = body["points"]
    assert first["t"] == this_minute(2).timestamp()
    assert (first["cpu_pct"], first["net_rx_bps"], first["mem_used_mib"]) == (40.0, 1000.0, 300)
    assert (second["disk_wr_iops"], second["mem_used_mib"]) == (10.0, None)
    assert set(first) == {
        "t",
        "cpu_pct",
        "mem_used_mib",
        "mem_total_mib",
        "disk_rd_bps",
        "disk_wr_bps",
        "disk_rd_iops",
        "disk_wr_iops",
        "net_rx_bps",
        "net_tx_bps",
        "net_rx_pps",
        "net_tx_pps",
    }


@pytest.mark.django_db
def test_a_day_in_five_minute_steps_and_a_month_from_the_hour_rollups(owner_client, server):
    # given minutes 12:00 and 12:01 of a five-minute step, and two hour rows
    step_start = datetime.fromtimestamp((this_minute(30).timestamp() // 300) * 300, UTC)
    bucket_row(ServerStatsMinute, server, step_start, cpu_pct_avg=10.0, samples=30)
    bucket_row(
        ServerStatsMinute, server, step_start + timedelta(minutes=1), cpu_pct_avg=40.0, samples=10
    )
    hour = this_minute(0).replace(minute=0) - timedelta(days=3)
    bucket_row(ServerStatsHour, server, hour, net_tx_bytes=3600 * 500)
    bucket_row(ServerStatsHour, server, hour - timedelta(days=20))

    # when
    day = owner_client.get(f"/api/v1/servers/{server.uuid}/stats/?range=24h").json()
    week = owner_client.get(f"/api/v1/servers/{server.uuid}/stats/?range=7d").json()
    month = owner_client.get(f"/api/v1/servers/{server.uuid}/stats/?range=30d").json()

    # then the two minutes are one point, averaged by their samples
    assert day["step"] == 300
    (point,) = day["points"]
    assert point["t"] == step_start.timestamp()
    assert point["cpu_pct"] == pytest.approx((10 * 30 + 40 * 10) / 40, abs=0.01)
    assert week["step"] == 3600 and [p["net_tx_bps"] for p in week["points"]] == [500.0]
    assert len(month["points"]) == 2


@pytest.mark.django_db
def test_history_is_scoped_like_every_server_route(other_client, anon_client, owner_client, server):
    bucket_row(ServerStatsMinute, server, this_minute(1))
    url = f"/api/v1/servers/{server.uuid}/stats/"
    assert other_client.get(url).status_code == 404
    assert other_client.get(f"/api/v1/servers/{server.uuid}/usage/").status_code == 404
    assert anon_client.get(url).status_code == 401
    assert owner_client.get(url + "?range=2y").status_code == 400


@pytest.mark.django_db
def test_a_months_chart_reads_only_its_server_in_a_fixed_number_of_queries(
    owner_client, server, django_assert_max_num_queries
):
    # given other servers' history beside this one's
    others = [ServerFactory(customer=server.customer, host=server.host) for _ in range(20)]
    start = this_minute(0).replace(minute=0) - timedelta(days=29)
    ServerStatsHour.objects.bulk_create(
        ServerStatsHour(server=s, bucket=start + timedelta(hours=h), samples=1, seconds=3600)
        for s in [server, *others]
        for h in range(0, 29 * 24, 6)
    )

    # when / then: the session's user and token, the server, one read of its rows
    with django_assert_max_num_queries(6):
        body = owner_client.get(f"/api/v1/servers/{server.uuid}/stats/?range=30d").json()
    assert len(body["points"]) == 29 * 4


@pytest.mark.django_db
def test_monthly_usage_sums_the_months_hour_rollups(owner_client, server):
    # given two hours in March 2026 (one across a reboot: amounts are increases) and April
    march = datetime(2026, 3, 1, tzinfo=UTC)
    bucket_row(
        ServerStatsHour,
        server,
        march,
        cpu_seconds=5400.0,
        net_rx_bytes=2 * GIB,
        net_tx_bytes=GIB // 2,
        disk_rd_bytes=GIB,
        disk_wr_reqs=700,
    )
    bucket_row(ServerStatsHour, server, datetime(2026, 3, 31, 23, tzinfo=UTC), cpu_seconds=1800.0)
    bucket_row(ServerStatsHour, server, datetime(2026, 4, 1, tzinfo=UTC), cpu_seconds=3600.0)

    # when
    resp = owner_client.get(f"/api/v1/servers/{server.uuid}/usage/?month=2026-03")

    # then
    assert resp.status_code == 200
    usage = resp.json()
    assert usage["month"] == "2026-03"
    assert usage["cpu_hours"] == 2.0
    assert (usage["transfer_in_gib"], usage["transfer_out_gib"], usage["transfer_gib"]) == (
        2.0,
        0.5,
        2.5,
    )
    assert (usage["disk_read_gib"], usage["disk_write_ops"]) == (1.0, 700)
    assert usage["measured_hours"] == 2.0
    assert usage["transfer_allowance_gib"] == server.plan.transfer_gib
    assert owner_client.get(f"/api/v1/servers/{server.uuid}/usage/?month=March").status_code == 400


@pytest.mark.django_db
def test_retention_trims_old_minutes_and_hours(server, settings):
    # given rows just inside and just outside each retention
    now = timezone.now()
    keep_minute = bucket_row(ServerStatsMinute, server, now - timedelta(days=1))
    bucket_row(
        ServerStatsMinute, server, now - settings.STATS_MINUTE_RETENTION - timedelta(hours=1)
    )
    keep_hour = bucket_row(ServerStatsHour, server, now - timedelta(days=300))
    bucket_row(ServerStatsHour, server, now - settings.STATS_HOUR_RETENTION - timedelta(hours=1))

    # when
    trimmed = stats_history.trim(now=now)

    # then
    assert trimmed == {"minutes": 1, "hours": 1}
    assert list(ServerStatsMinute.objects.all()) == [keep_minute]
    assert list(ServerStatsHour.objects.all()) == [keep_hour]


@pytest.mark.django_db
def test_the_server_page_shows_this_months_usage(client, owner, server):
    # given 3 GiB received this month on a plan with a 10 GiB allowance
    server.plan.transfer_gib = 10
    server.plan.save()
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    bucket_row(ServerStatsHour, server, month_start, net_rx_bytes=3 * GIB, cpu_seconds=1800.0)
    client.force_login(owner)

    # when
    body = client.get(reverse("dashboard:server-detail", kwargs={"uuid": server.uuid}))
    html = body.content.decode()

    # then
    assert body.status_code == 200
    assert 'data-usage="cpu_hours">0.50 h' in html
    assert 'data-usage="allowance">3.00 of 10 GiB (30.0 %)' in html
