"""Benchmark: one server's usage chart with 1,000 servers' history in the database.

    make bench-history            # or: .venv/bin/python bench/history.py --servers 1000

Fills a database of its own (Django's test database: `paddock_bench_history` on
PostgreSQL, var/bench-history.sqlite3 on SQLite) with --servers servers, each with 30
days of 1-hour rollups and 24 hours of 1-minute rollups (1,000 servers: 720,000 hour
rows and 1,440,000 minute rows), then times (median and p95 of --runs) the chart
requests of one server, `GET /api/v1/servers/<uuid>/stats/?range=...` through DRF's
test client with the owner's token, and its monthly usage; with the query count.
Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from hosting.choices import HostState, MemberRole, ServerState, TokenScope  # noqa: E402
from hosting.models import (  # noqa: E402
    Customer,
    Host,
    Image,
    Membership,
    Plan,
    Server,
    ServerStatsHour,
    ServerStatsMinute,
)
from hosting.services.tokens import issue_token  # noqa: E402


def populate(n: int, *, days: int, minute_hours: int) -> Server:
    host = Host.objects.create(
        name="bench-host", libvirt_uri="test:///default", state=HostState.ONLINE
    )
    plan = Plan.objects.create(name="Bench", vcpus=1, memory_mib=512, disk_gib=10)
    image = Image.objects.create(name="Bench image", volume_name="bench.qcow2")
    customers = Customer.objects.bulk_create(
        Customer(name=f"Customer {i:03d}", email=f"c{i}@example.com") for i in range(100)
    )
    servers = Server.objects.bulk_create(
        Server(
            customer=customers[i % 100],
            plan=plan,
            image=image,
            host=host,
            hostname=f"s{i:05d}",
            state=ServerState.RUNNING,
            domain_name=f"bench-{i:05d}",
            mac_address=f"52:54:02:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        )
        for i in range(n)
    )
    now = timezone.now().replace(second=0, microsecond=0)
    hour0 = now.replace(minute=0) - timedelta(days=days)
    minute0 = now - timedelta(hours=minute_hours)
    if connection.vendor == "postgresql":
        fill_postgres(hour0, days * 24, minute0, minute_hours * 60)
    else:
        for s in servers:
            ServerStatsHour.objects.bulk_create(
                row(ServerStatsHour, s, hour0 + timedelta(hours=h), 3600) for h in range(days * 24)
            )
            ServerStatsMinute.objects.bulk_create(
                row(ServerStatsMinute, s, minute0 + timedelta(minutes=m), 60)
                for m in range(minute_hours * 60)
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return servers[n // 2]


def row(model, server, bucket, seconds):
    return model(
        server=server,
        bucket=bucket,
        samples=30,
        seconds=seconds,
        cpu_pct_avg=12.5,
        cpu_pct_max=40.0,
        cpu_seconds=seconds * 0.125,
        mem_used_mib_avg=300,
        mem_total_mib=512,
        net_rx_bytes=seconds * 1000,
        net_tx_bytes=seconds * 500,
    )


def fill_postgres(hour0, hours: int, minute0, minutes: int) -> None:
    columns = (
        "server_id, bucket, samples, seconds, cpu_pct_avg, cpu_pct_max, cpu_seconds, "
        "mem_used_mib_avg, mem_total_mib, disk_rd_bytes, disk_wr_bytes, disk_rd_reqs, "
        "disk_wr_reqs, net_rx_bytes, net_tx_bytes, net_rx_packets, net_tx_packets"
    )
    for table, start, count, step in (
        (ServerStatsHour._meta.db_table, hour0, hours, 3600),
        (ServerStatsMinute._meta.db_table, minute0, minutes, 60),
    ):
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                f"SELECT s.id, %s + (g * interval '{step} seconds'), 30, {step}, 12.5, 40, "
                f"{step} * 0.125, 300, 512, 0, 0, 0, 0, {step} * 1000, {step} * 500, 0, 0 "
                f"FROM hosting_server s CROSS JOIN generate_series(0, %s) g "
                f"ORDER BY g, s.id",
                [start, count - 1],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minute-hours", type=int, default=24)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    settings.VAR_DIR.mkdir(exist_ok=True)
    db["TEST"]["NAME"] = (
        str(settings.VAR_DIR / "bench-history.sqlite3") if sqlite else "paddock_bench_history"
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        started = time.perf_counter()
        server = populate(args.servers, days=args.days, minute_hours=args.minute_hours)
        setup_s = time.perf_counter() - started
        hour_rows = ServerStatsHour.objects.count()
        minute_rows = ServerStatsMinute.objects.count()
        user = get_user_model().objects.create_user("bench-owner", password="unused-password")
        Membership.objects.create(user=user, customer=server.customer, role=MemberRole.OWNER)
        _, key = issue_token(user=user, scope=TokenScope.CUSTOMER, customer=server.customer)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        month = timezone.now().strftime("%Y-%m")
        urls = {
            f"stats range={r}": f"/api/v1/servers/{server.uuid}/stats/?range={r}"
            for r in ("1h", "24h", "7d", "30d")
        }
        urls["usage this month"] = f"/api/v1/servers/{server.uuid}/usage/?month={month}"
        results = {}
        for name, url in urls.items():
            for _ in range(3):
                assert client.get(url).status_code == 200
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                resp = client.get(url)
                times.append(time.perf_counter() - t)
            with CaptureQueriesContext(connection) as queries:
                body = client.get(url).json()
            points = len(body["points"]) if "points" in body else "-"
            times.sort()
            results[name] = (
                statistics.median(times) * 1000,
                times[int(len(times) * 0.95) - 1] * 1000,
                len(queries),
                points,
            )
            assert resp.status_code == 200
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(
        f"One server's history with {args.servers:,} servers' present ({connection.vendor}; "
        f"{hour_rows:,} hour rows, {minute_rows:,} minute rows; set-up {setup_s:.1f} s; "
        f"DRF test client in-process, {args.runs} timed runs after 3 warm-up)"
    )
    print(f"  {'request':<20} {'median ms':>10} {'p95 ms':>9} {'queries':>8} {'points':>7}")
    for name, (median, p95, queries, points) in results.items():
        print(f"  {name:<20} {median:10.2f} {p95:9.2f} {queries:8d} {points!s:>7}")


if __name__ == "__main__":
    main()
