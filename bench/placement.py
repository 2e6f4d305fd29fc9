"""Benchmark: placement at fleet scale (issue 9): 1,000 hosts and 50,000 servers.

    make bench-placement            # or: .venv/bin/python bench/placement.py --orders 4000

Runs against a database of its own (`paddock_bench_placement` on PostgreSQL when
DATABASE_URL is set, else var/bench-placement.sqlite3), made and dropped by Django's
test-database machinery; the configured database is never touched.

Each order is what placement adds to an order's transaction: `placement.claim()` (one
statement on PostgreSQL: choose, lock the one host, re-check, raise its counters) and the
server's row, committed. Orders
run in --threads concurrent threads (one connection each). Printed:

1. throughput (orders/s) and p50/p95 latency of one order, spread policy, on the full
   fleet (1,000 hosts, 50,000 servers);
2. the same on a small fleet (100 hosts, 5,000 servers) for the engine and for the old
   algorithm (lock every candidate host, sum every server per host), measured in the
   same run, with the ratio;
3. 200 orders at once (--burst-threads connections) on 10 hosts with room for 100: how
   many were placed and how many hosts hold more than their capacity (from the servers'
   plans, not the counters);
4. pack mode: --pack-orders orders of mixed plans onto 200 empty hosts: hosts used
   against the lower bound (ceil of total demand / host capacity, the binding resource),
   and the ratio; spread on the same fleet for contrast.

Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
warnings.filterwarnings("ignore", message="No directory at")

from support import ensure_redis  # noqa: E402

ensure_redis()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.db.models import Count, Q, Sum  # noqa: E402

from hosting.choices import HostState, PlacementPolicy, ServerState  # noqa: E402
from hosting.models import Customer, Host, Image, Plan, Server, Zone  # noqa: E402
from hosting.services import placement  # noqa: E402
from hosting.services.errors import NoCapacity  # noqa: E402
from hosting.services.placement import PlacementRequest  # noqa: E402

GIB = 1024
# (vCPUs, MiB, GiB) of the plan mix, and how often each is ordered
PLANS = [(1, 1 * GIB, 20), (2, 2 * GIB, 40), (4, 4 * GIB, 80), (8, 8 * GIB, 160)]
WEIGHTS = [4, 3, 2, 1]
HOST = {"cpus": 128, "memory_mib": 256 * GIB, "disk_gib": 20_000}  # x4 vCPU overcommit
_mac = iter(range(1, 1 << 40))
_mac_lock = threading.Lock()


def mac() -> str:
    with _mac_lock:
        n = next(_mac)
    return "52:" + ":".join(f"{(n >> s) & 255:02x}" for s in (32, 24, 16, 8, 0))


def make_hosts(zone: str, count: int, **fields) -> list[Host]:
    values = {**HOST, **fields}
    return Host.objects.bulk_create(
        Host(
            name=f"{zone}-{i:04d}",
            libvirt_uri=f"test:///default?{zone}={i}",
            state=HostState.ONLINE,
            zone=zone,
            **values,
        )
        for i in range(count)
    )


def fill(hosts: list[Host], n_servers: int, plans: list[Plan], customer, image) -> None:
    """n servers spread at random over `hosts` (within capacity), counters rebuilt."""
    rng = random.Random(7)
    batch = []
    for i in range(n_servers):
        batch.append(
            Server(
                customer=customer,
                plan=rng.choices(plans, WEIGHTS)[0],
                image=image,
                host=hosts[i % len(hosts)],
                hostname=f"s{i}",
                domain_name=f"paddock-fill-{hosts[0].zone}-{i}",
                mac_address=mac(),
                state=ServerState.RUNNING,
            )
        )
        if len(batch) == 5000:
            Server.objects.bulk_create(batch)
            batch = []
    Server.objects.bulk_create(batch)
    placement.recount(hosts)


def old_choose_host(*, plan: Plan, zone: str) -> Host:
    """The algorithm this engine replaced (hosting/services/placement.py before issue 9):
    lock every candidate host, then sum every server per host under the lock."""
    live = Q(servers__state__in=placement.HOLDING_STATES)
    candidates = Host.objects.filter(state=HostState.ONLINE, kind=plan.kind, zone=zone)
    locked = list(candidates.select_for_update().values_list("pk", flat=True))
    rows = Host.objects.filter(pk__in=locked).annotate(
        v=Sum("servers__plan__vcpus", filter=live, default=0),
        m=Sum("servers__plan__memory_mib", filter=live, default=0),
        d=Sum("servers__plan__disk_gib", filter=live, default=0),
        n=Count("servers", filter=live),
    )
    fits = [
        h
        for h in rows
        if h.vcpu_capacity - h.v >= plan.vcpus
        and h.memory_capacity_mib - h.m >= plan.memory_mib
        and h.disk_gib - h.d >= plan.disk_gib
    ]
    if not fits:
        raise NoCapacity("full")
    return max(fits, key=lambda h: (h.memory_capacity_mib - h.m, -h.pk))


def run_orders(orders: list[Plan], threads: int, place, customer, image) -> dict:
    """Place `orders` from `threads` connections; each order one transaction."""
    latencies: list[float] = []
    placed: list[int] = []
    refused = [0]
    errors: list[BaseException] = []
    queue = list(enumerate(orders))
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        try:
            barrier.wait(60)
            while True:
                with lock:
                    if not queue:
                        return
                    i, plan = queue.pop()
                started = time.perf_counter()
                try:
                    with transaction.atomic():
                        host = place(plan)
                        Server.objects.create(
                            customer=customer,
                            plan=plan,
                            image=image,
                            host=host,
                            hostname=f"o{i}",
                            mac_address=mac(),
                        )
                except NoCapacity:
                    with lock:
                        refused[0] += 1
                    continue
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took * 1000)
                    placed.append(host.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return {
        "placed": len(placed),
        "refused": refused[0],
        "rate": len(placed) / wall if wall else 0.0,
        "p50": statistics.median(latencies) if latencies else 0.0,
        "p95": p95(latencies),
    }


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def engine(customer, zone: str, policy: str = ""):
    def place(plan: Plan) -> Host:
        request = PlacementRequest.for_order(plan=plan, customer=customer, zone=zone, policy=policy)
        return placement.claim(request)

    return place


def over_allocated(zone: str) -> int:
    """Hosts of `zone` whose servers' plans exceed their capacity (counted from the
    servers, not from the counters)."""
    count = 0
    for host in Host.objects.filter(zone=zone):
        v, m, d, _ = placement.counted_usage(host.pk)
        if v > host.vcpu_capacity or m > host.memory_capacity_mib or d > host.disk_gib:
            count += 1
    return count


def line(name: str, r: dict) -> str:
    return (
        f"{name:34}{r['rate']:10.0f}{r['p50']:9.2f}{r['p95']:9.2f}{r['placed']:8d}{r['refused']:8d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--baseline-orders", type=int, default=300)
    parser.add_argument("--burst-threads", type=int, default=50)
    parser.add_argument("--pack-orders", type=int, default=5000)
    args = parser.parse_args()

    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    db["TEST"]["NAME"] = (
        str(settings.VAR_DIR / "bench-placement.sqlite3") if sqlite else "paddock_bench_placement"
    )
    settings.VAR_DIR.mkdir(exist_ok=True)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    rng = random.Random(11)
    try:
        started = time.perf_counter()
        customer = Customer.objects.create(name="Bench", email="bench@example.com")
        image = Image.objects.create(name="Bench image", volume_name="bench.qcow2")
        plans = Plan.objects.bulk_create(
            Plan(name=f"P{v}", vcpus=v, memory_mib=m, disk_gib=d) for v, m, d in PLANS
        )
        fleet = make_hosts("fleet", args.hosts)
        fill(fleet, args.servers, plans, customer, image)
        small = make_hosts("small", args.hosts // 10)
        fill(small, args.servers // 10, plans, customer, image)
        # 10 hosts with room for exactly 10 servers of 1 GiB each (memory binds)
        make_hosts("burst", 10, memory_mib=10 * GIB)
        packed = make_hosts("pack", 200)
        make_hosts("spread", 200)
        Zone.objects.create(name="pack", policy=PlacementPolicy.PACK)
        with connection.cursor() as cursor:  # the statistics autovacuum would gather
            cursor.execute("ANALYZE")
        setup_s = time.perf_counter() - started

        def mix(n: int) -> list[Plan]:
            return rng.choices(plans, WEIGHTS, k=n)

        fleet_run = run_orders(
            mix(args.orders), args.threads, engine(customer, "fleet"), customer, image
        )
        small_new = run_orders(
            mix(args.baseline_orders), args.threads, engine(customer, "small"), customer, image
        )

        def old(plan: Plan) -> Host:
            return old_choose_host(plan=plan, zone="small")

        small_old = run_orders(mix(args.baseline_orders), args.threads, old, customer, image)
        placement.recount(small)  # the old algorithm keeps no counters
        burst = run_orders(
            [plans[0]] * 200, args.burst_threads, engine(customer, "burst"), customer, image
        )
        burst_over = over_allocated("burst")
        fleet_over = over_allocated("fleet")
        pack_orders = mix(args.pack_orders)
        pack_run = run_orders(pack_orders, args.threads, engine(customer, "pack"), customer, image)
        spread_run = run_orders(
            pack_orders, args.threads, engine(customer, "spread"), customer, image
        )
        used = {
            zone: Host.objects.filter(zone=zone, alloc_servers__gt=0).count()
            for zone in ("pack", "spread")
        }
        demand = [sum(p.vcpus for p in pack_orders), sum(p.memory_mib for p in pack_orders)]
        demand.append(sum(p.disk_gib for p in pack_orders))
        h = packed[0]
        capacity = [h.vcpu_capacity, h.memory_capacity_mib, h.disk_gib]
        bound = max(math.ceil(d / c) for d, c in zip(demand, capacity, strict=True))
        drift = placement.recount()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(
        f"Placement: {args.hosts:,} hosts and {args.servers:,} servers ({connection.vendor}); "
        f"{args.threads} threads, one connection each; an order = claim() + its server row, "
        f"one transaction; set-up {setup_s:.1f} s"
    )
    print(f"{'':34}{'orders/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'placed':>8}{'refused':>8}")
    print(line(f"engine, {args.hosts:,} hosts, spread", fleet_run))
    print(line(f"engine, {args.hosts // 10:,} hosts", small_new))
    print(line(f"old algorithm, {args.hosts // 10:,} hosts", small_old))
    print(
        f"ratio engine / old on {args.hosts // 10} hosts, {args.servers // 10:,} servers: "
        f"{small_new['rate'] / small_old['rate']:.1f}x orders/s, "
        f"p95 {small_old['p95'] / small_new['p95']:.1f}x lower"
    )
    print(line(f"200 at once, {args.burst_threads} conns, room 100", burst))
    print(
        f"hosts over capacity (from the servers' plans): burst {burst_over}, "
        f"fleet {fleet_over}; counters that had drifted: {len(drift)}"
    )
    print(line(f"pack, {args.pack_orders:,} mixed orders", pack_run))
    print(line("spread, same orders", spread_run))
    print(
        f"pack: {used['pack']} hosts used, lower bound {bound} "
        f"(ceil of demand / host capacity), ratio {used['pack'] / bound:.3f}; "
        f"spread used {used['spread']}"
    )


if __name__ == "__main__":
    main()
