"""Benchmark: `GET /api/v1/servers/?page_size=100` with 10,000 servers in the database.

    make bench                       # or: .venv/bin/python bench/api_list.py --runs 100

Runs against a database of its own, made and dropped by Django's test-database machinery
on the configured engine: `paddock_bench` on PostgreSQL (DATABASE_URL set), or
var/bench.sqlite3 on SQLite. The configured database is never touched.

Prints the median and p95 latency and the query count of the API request (in-process,
through DRF's APIClient with a billing token, so no network and no server process), and
two baselines measured in the same run:
- the same 100 rows read straight from the ORM (`Server.objects.values()[:100]`): the
  floor that the database sets;
- the same API request with page_size=10: what a page of 100 costs over a small page.
It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Nothing is signed here: any key will do when none is configured (DEBUG stays off, so
# Django does not record queries on every request).
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")

# whitenoise warns when collectstatic has not run; the API serves no static files.
warnings.filterwarnings("ignore", message="No directory at")

from support import ensure_redis  # noqa: E402

# the token lookup is cached in Redis, as it is when the panel runs
ensure_redis()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from hosting.choices import HostState, ServerState, TokenScope  # noqa: E402
from hosting.models import Customer, Host, Image, IPAddress, IPPool, Plan, Server  # noqa: E402
from hosting.services.tokens import issue_token  # noqa: E402

# every ninth server is suspended by the provider (stopped, with the suspension flag)
STATES = [ServerState.RUNNING] * 6 + [ServerState.STOPPED] * 3


def populate(n_servers: int) -> None:
    """n servers over 100 customers, 5 hosts, 3 plans and 3 images, one IPv4 address each."""
    customers = Customer.objects.bulk_create(
        Customer(name=f"Customer {i:03d}", email=f"c{i}@example.com") for i in range(100)
    )
    plans = Plan.objects.bulk_create(
        Plan(name=f"Plan {i}", vcpus=i + 1, memory_mib=512 * (i + 1), disk_gib=10 * (i + 1))
        for i in range(3)
    )
    images = Image.objects.bulk_create(
        Image(name=f"Image {i}", volume_name=f"image-{i}.qcow2") for i in range(3)
    )
    hosts = Host.objects.bulk_create(
        Host(
            name=f"hv{i}",
            libvirt_uri=f"test:///default?bench={i}",
            state=HostState.ONLINE,
            cpus=64,
            memory_mib=262144,
            disk_gib=4000,
        )
        for i in range(5)
    )
    pool = IPPool(name="bench", network="10.0.0.0/16", gateway="10.0.0.1")
    pool.save()
    servers = Server.objects.bulk_create(
        (
            Server(
                customer=customers[i % len(customers)],
                plan=plans[i % len(plans)],
                image=images[i % len(images)],
                host=hosts[i % len(hosts)],
                hostname=f"vps-{i:05d}.example.net",
                state=STATES[i % len(STATES)],
                suspended=i % len(STATES) == len(STATES) - 1,
                domain_name=f"paddock-bench-{i:05d}",
                mac_address=f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            )
            for i in range(n_servers)
        ),
        batch_size=1000,
    )
    first = ipaddress.ip_address("10.0.0.2")
    IPAddress.objects.bulk_create(
        (IPAddress(pool=pool, server=s, address=str(first + i)) for i, s in enumerate(servers)),
        batch_size=1000,
    )


def measure(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 5) -> dict:
    """Time every function `runs` times, interleaved, so that load from elsewhere on the
    machine falls on all of them alike and the ratios stay fair."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20, method="inclusive")[18]


def count_queries(fn: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100, help="timed requests per figure")
    args = parser.parse_args()

    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    db["TEST"]["NAME"] = str(settings.VAR_DIR / "bench.sqlite3") if sqlite else "paddock_bench"
    settings.VAR_DIR.mkdir(exist_ok=True)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        started = time.perf_counter()
        populate(args.servers)
        staff = get_user_model().objects.create_user(
            "bench", password="bench-password-unused", is_staff=True, is_superuser=True
        )
        _, key = issue_token(user=staff, scope=TokenScope.BILLING, name="bench")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        setup_s = time.perf_counter() - started

        def api(page_size: int) -> Callable[[], object]:
            def call() -> object:
                resp = client.get("/api/v1/servers/", {"page_size": page_size})
                assert resp.status_code == 200, resp.content[:500]
                assert len(resp.json()["results"]) == page_size
                return resp

            return call

        def orm() -> object:
            rows = list(Server.objects.order_by("-created_at", "-id").values()[:100])
            assert len(rows) == 100
            return rows

        total = api(100)().json()["count"]
        fns = {
            "API  page_size=100": api(100),
            "API  page_size=10": api(10),
            "ORM  values()[:100]": orm,
        }
        times = measure(fns, args.runs)
        queries = {name: count_queries(fn) for name, fn in fns.items()}
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(
        f"GET /api/v1/servers/?page_size=100 with {total:,} servers "
        f"({connection.vendor}, Django test client in-process, {args.runs} timed runs "
        f"after 5 warm-up; set-up {setup_s:.1f} s)"
    )
    print(f"{'':22}{'median ms':>10}{'p95 ms':>10}{'queries':>9}")
    for name in fns:
        median = statistics.median(times[name])
        print(f"{name:22}{median:10.2f}{p95(times[name]):10.2f}{queries[name]:9d}")
    api_median, small_median, orm_median = (statistics.median(t) for t in times.values())
    print(f"ratio API page of 100 / ORM read of 100 rows:  {api_median / orm_median:.1f}x")
    print(f"ratio API page of 100 / API page of 10:        {api_median / small_median:.1f}x")
    same = queries["API  page_size=100"] == queries["API  page_size=10"]
    print(f"query count is the same for both page sizes: {same}")


if __name__ == "__main__":
    main()
