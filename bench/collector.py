"""Benchmark: one stats collector pass over 1,000 guests of one host (libvirt test driver).

    make bench-collector             # or: .venv/bin/python bench/collector.py --domains 1000

Defines and starts N small domains on libvirt's in-process test driver, then measures
(median of --runs each, after one warm-up):
- the bulk read the collector makes: one getAllDomainStats call for every guest, parsed
  into neutral records (and the same through the backend's `stats()`);
- the same records read one call per domain (domainListGetStats([dom]), parsed alike),
  and the cheapest per-domain call there is (dom.info()): the baselines. The test driver
  runs in this process, so a call costs no round trip here; on a remote host
  (qemu+tcp/ssh/tls) each call is one RPC round trip, 1 against N;
- a whole collector pass (`collect_host`: the bulk read, the host's servers from the
  database, rates, state in Redis, the messages to the groups that have members: one
  channel in --watched servers' groups and the fleet's), and the same pass without
  publishing.
The test driver reports state only (no CPU, block or interface counters), so rates are
zero; the figures are the collector's own cost, not a hypervisor's. Runs on a database of
its own (Django's test database: `paddock_bench_collector` on PostgreSQL, or
var/bench-collector.sqlite3), and on REDIS_URL or an embedded Redis of its own. Asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
BENCH_REDIS = ROOT / "var" / f"redis-bench-{os.getpid()}.sock"
if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = f"unix://{BENCH_REDIS}"
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

import libvirt  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402

from devtools import embedded_redis  # noqa: E402
from hosting.backends import get_backend  # noqa: E402
from hosting.backends.libvirt_stats import STATS_GROUPS, guest_stats  # noqa: E402
from hosting.choices import HostState, ServerState  # noqa: E402
from hosting.models import Customer, Host, Image, Plan, Server  # noqa: E402
from hosting.services.collector import collect_host, state_key  # noqa: E402
from hosting.services.events import FLEET_GROUP, server_group  # noqa: E402

URI = "test:///default"
LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
PREFIX = "bench-collector-"


def domain_xml(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


def define_domains(conn: libvirt.virConnect, n: int) -> list[str]:
    names = [f"{PREFIX}{i:05d}" for i in range(n)]
    for name in names:
        dom = conn.defineXML(domain_xml(name))
        dom.create()
    return names


def populate(names: list[str]) -> Host:
    host = Host.objects.create(
        name="bench-host",
        libvirt_uri=URI,
        state=HostState.ONLINE,
        storage_pool="default-pool",
        cpus=64,
        memory_mib=512 * 1024,
        disk_gib=100_000,
    )
    plan = Plan.objects.create(name="Bench", vcpus=1, memory_mib=64, disk_gib=1)
    image = Image.objects.create(name="Bench image", volume_name="bench.qcow2")
    customers = Customer.objects.bulk_create(
        Customer(name=f"Customer {i:03d}", email=f"c{i}@example.com") for i in range(100)
    )
    Server.objects.bulk_create(
        Server(
            customer=customers[i % len(customers)],
            plan=plan,
            image=image,
            host=host,
            hostname=f"guest-{i:05d}",
            state=ServerState.RUNNING,
            domain_name=name,
            mac_address=f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        )
        for i, name in enumerate(names)
    )
    return host


class Watchers(threading.Thread):
    """Sockets' stand-ins in a thread with its own event loop (as a web process): one
    channel in each of `n` servers' groups and in the fleet's, draining what arrives."""

    def __init__(self, n: int) -> None:
        super().__init__(daemon=True)
        self.groups = [
            server_group(u) for u in Server.objects.values_list("uuid", flat=True)[:n]
        ] + [FLEET_GROUP]
        self.received = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()

    def run(self) -> None:
        self.loop.run_until_complete(self.main())

    async def main(self) -> None:
        layer = get_channel_layer()
        channels = []
        for group in self.groups:
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
            channels.append(channel)

        async def drain(channel: str) -> None:
            while True:
                await layer.receive(channel)
                self.received += 1

        self.stopping = asyncio.Event()
        draining = asyncio.gather(*(drain(c) for c in channels))
        self.ready.set()
        await self.stopping.wait()
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
        await layer.flush()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.join(10)


def median_of(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--watched", type=int, default=100, help="servers with a socket on their group"
    )
    parser.add_argument(
        "--layer",
        choices=sorted(LAYERS),
        default=None,
        help="channel layer (default: the configured one)",
    )
    args = parser.parse_args()
    if args.layer:
        settings.CHANNEL_LAYERS["default"]["BACKEND"] = LAYERS[args.layer]

    redis = None
    if os.environ["REDIS_URL"] == f"unix://{BENCH_REDIS}":
        redis = embedded_redis.start(BENCH_REDIS)
    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    settings.VAR_DIR.mkdir(exist_ok=True)
    db["TEST"]["NAME"] = (
        str(settings.VAR_DIR / "bench-collector.sqlite3") if sqlite else "paddock_bench_collector"
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    conn = libvirt.open(URI)
    try:
        names = define_domains(conn, args.domains)
        host = populate(names)
        backend = get_backend(host)
        doms = [d for d in conn.listAllDomains(0) if d.name().startswith(PREFIX)]
        assert len(doms) == args.domains

        def bulk() -> int:
            records = {
                dom.name(): guest_stats(values)
                for dom, values in conn.getAllDomainStats(STATS_GROUPS, 0)
            }
            return len(records)

        def backend_stats() -> int:
            return len(backend.stats().guests)

        def per_domain_stats() -> int:
            records = {
                d.name(): guest_stats(values)
                for dom in doms
                for d, values in conn.domainListGetStats([dom], STATS_GROUPS, 0)
            }
            return len(records)

        def per_domain_info() -> int:
            return len([dom.info() for dom in doms])

        def full_pass(publish: bool) -> Callable[[], object]:
            def run() -> object:
                result = collect_host(host=host, backend=backend, publish=publish)
                assert not result.skipped, result.skipped
                return result

            return run

        watchers = Watchers(args.watched)
        watchers.start()
        watchers.ready.wait(60)
        cache.delete(state_key(host.pk))
        figures = {}
        figures["bulk"], guests = median_of(bulk, args.runs)
        assert guests >= args.domains
        figures["per_stats"], _ = median_of(per_domain_stats, args.runs)
        figures["backend"], _ = median_of(backend_stats, args.runs)
        figures["per_info"], _ = median_of(per_domain_info, args.runs)
        figures["pass_quiet"], _ = median_of(full_pass(False), args.runs)
        figures["pass"], last = median_of(full_pass(True), args.runs)
        time.sleep(1)
        received = watchers.received
        watchers.stop()
    finally:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(PREFIX):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if redis is not None:
            redis.terminate()
            redis.wait(10)
            BENCH_REDIS.unlink(missing_ok=True)

    ms = {name: value * 1000 for name, value in figures.items()}
    n = args.domains
    print(
        f"Stats collector, one host with {n:,} running domains (libvirt {URI}, "
        f"{connection.vendor}, median of {args.runs} after 1 warm-up; {args.watched} "
        f"servers and the fleet watched; {settings.CHANNEL_LAYERS['default']['BACKEND']})"
    )
    print(f"  bulk read: getAllDomainStats, 1 call      {ms['bulk']:9.1f} ms")
    print(f"  per domain: domainListGetStats, {n} calls {ms['per_stats']:9.1f} ms")
    print(f"  per domain: dom.info(), {n} calls         {ms['per_info']:9.1f} ms")
    print(
        f"  ratio per-domain stats / bulk              {ms['per_stats'] / ms['bulk']:9.1f} x"
        f"   (dom.info() / bulk {ms['per_info'] / ms['bulk']:.1f} x)"
    )
    print(f"  messages the watchers received             {received:9,d}")
    print(f"  backend.stats() (bulk, connection, parse)  {ms['backend']:9.1f} ms")
    print(f"  whole pass, not published                  {ms['pass_quiet']:9.1f} ms")
    print(
        f"  whole pass, published ({last.sent:,} messages)   {ms['pass']:9.1f} ms"
        f"   ({ms['pass'] / (settings.STATS_INTERVAL * 1000):.0%} of the "
        f"{settings.STATS_INTERVAL:g} s interval)"
    )


if __name__ == "__main__":
    main()
