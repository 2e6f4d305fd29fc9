"""The stats collector (hosting/services/collector.py): passes over a host, published to
the real channel layer (Redis), rolled up into the database, run by a real worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache

from hosting.backends.libvirt_stats import guest_stats
from hosting.backends.stats import HostStats
from hosting.models import ServerStatsHour, ServerStatsMinute
from hosting.services import stats_history
from hosting.services.collector import (
    collect_host,
    last_sample_key,
    record_pass,
    state_key,
    stats_queue,
)
from hosting.services.events import FLEET_GROUP, customer_group, host_group, server_group

from .factories import TEST_QUEUE
from .test_stats_rates import record

T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def fresh_collector_state(host):
    cache.delete_many([state_key(host.pk), last_sample_key(host.pk)])
    yield
    cache.delete_many([state_key(host.pk), last_sample_key(host.pk)])


def use_layer(settings, backend: str) -> None:
    """The channel layer `backend` (a channels-redis class) with the configured Redis."""
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend, "CONFIG": config}}


@pytest.fixture
def core_layer(settings):
    """channels-redis's list layer (CHANNELS_BACKEND=core), whose channels outlive the
    event loop that made them: `listen` and `received` below use one loop each. The
    default Pub/Sub layer has its own test (test_a_pass_reaches_sockets_on_the_pubsub_...)."""
    use_layer(settings, "channels_redis.core.RedisChannelLayer")


def listen(*groups: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    for group in groups:
        async_to_sync(layer.group_add)(group, channel)
    return channel


def received(channel: str, count: int) -> list[dict]:
    layer = get_channel_layer()

    async def rec():
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(layer.receive(channel), 1))
            except TimeoutError:
                return out

    return async_to_sync(rec)()


def host_stats(t: float, guests: dict[str, dict]) -> HostStats:
    return HostStats(timestamp=t, guests={name: guest_stats(v) for name, v in guests.items()})


@pytest.mark.django_db(transaction=True)
def test_a_pass_publishes_each_servers_sample_and_the_hosts_totals(server, host, core_layer):
    # given a server's guest seen once, and sockets on every group of the contract
    channel = listen(
        server_group(server.uuid), customer_group(server.customer_id), host_group(host.pk)
    )
    fleet = listen(FLEET_GROUP)
    name = server.domain_name
    record_pass(host=host, current=host_stats(T0, {name: record(cpu_ns=0)}), publish=False)
    assert cache.get(last_sample_key(host.pk))["servers"] == 1

    # when it is seen again 2 s later
    result = record_pass(
        host=host, current=host_stats(T0 + 2, {name: record(cpu_ns=2 * 10**9, rx=4000)})
    )

    # then one sample to its server and customer groups, the host's to host and fleet
    assert (result.samples, result.sent) == (1, 4)
    messages = received(channel, 3)
    samples = [m for m in messages if m["type"] == "stats.sample"]
    assert len(samples) == 2
    sample = samples[0]["sample"]
    assert sample["server"] == str(server.uuid) and sample["t"] == T0 + 2
    assert sample["cpu_pct"] == 50.0 and sample["net_rx_bps"] == 2000.0
    (host_message,) = [m for m in messages if m["type"] == "stats.host"]
    assert received(fleet, 1)[0] == host_message
    totals = host_message["host"]
    assert totals["id"] == host.pk and totals["servers"] == 1
    # 2 s of CPU in 2 s on a 16-CPU host
    assert totals["cpu_pct"] == pytest.approx(100 / 16, abs=0.01)
    assert totals["vcpus_used"] == server.plan.vcpus
    assert totals["vcpus_capacity"] == host.vcpu_capacity
    assert totals["top"] == [{"server": str(server.uuid), "hostname": "web-1", "cpu_pct": 50.0}]


@pytest.mark.django_db(transaction=True)
def test_groups_nobody_listens_to_are_not_sent_to(server, host, core_layer):
    # given only the fleet is watched
    fleet = listen(FLEET_GROUP)
    name = server.domain_name
    record_pass(host=host, current=host_stats(T0, {name: record()}), publish=False)

    # when
    result = record_pass(host=host, current=host_stats(T0 + 2, {name: record(cpu_ns=10**9)}))

    # then the server's sample went nowhere, the host's to the fleet
    assert (result.samples, result.sent) == (1, 1)
    assert [m["type"] for m in received(fleet, 1)] == ["stats.host"]


@pytest.mark.django_db(transaction=True)
def test_a_guest_restarted_between_passes_never_gives_negative_rates(server, host):
    # given a guest with large counters, then restarted (counters from zero)
    name = server.domain_name
    record_pass(host=host, current=host_stats(T0, {name: record(cpu_ns=10**12, rx=10**9)}))
    result = record_pass(
        host=host, current=host_stats(T0 + 2, {name: record(cpu_ns=10**9, rx=600)}), publish=False
    )

    # then the sample counts from the restart
    (payload,) = {id(p): p for _, p in result.messages if p["type"] == "stats.sample"}.values()
    assert payload["sample"]["net_rx_bps"] == 300.0
    assert payload["sample"]["cpu_pct"] == 25.0


@pytest.mark.django_db(transaction=True)
def test_a_finished_minute_becomes_a_minute_row_and_the_hours_rollup(server, host):
    # given passes every 2 s through the minute 12:00 (a reboot in the middle)
    name = server.domain_name
    counters = [(0, 0), (10**9, 1000), (2 * 10**9, 3000), (5 * 10**8, 500), (10**9, 1500)]
    for i, (cpu, rx) in enumerate(counters):
        record_pass(
            host=host,
            current=host_stats(T0 + 2 * i, {name: record(cpu_ns=cpu, rx=rx, tx=rx // 2)}),
            publish=False,
        )
    assert not ServerStatsMinute.objects.exists()

    # when the first pass of the next minute runs
    result = record_pass(
        host=host, current=host_stats(T0 + 60, {name: record(cpu_ns=10**9, rx=1500)}), publish=False
    )

    # then the minute 12:00 holds 4 samples over 8 s: 1000+2000+500+1000 bytes received
    assert result.minutes_written == 1
    minute = ServerStatsMinute.objects.get(server=server)
    assert minute.bucket == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert (minute.samples, minute.seconds) == (4, 8.0)
    assert minute.net_rx_bytes == 4500 and minute.net_tx_bytes == 2250
    assert minute.cpu_seconds == pytest.approx(1 + 1 + 0.5 + 0.5)
    assert minute.mem_used_mib_avg == 400
    hour = ServerStatsHour.objects.get(server=server)
    assert hour.bucket == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert (hour.net_rx_bytes, hour.samples) == (4500, 4)
    assert hour.cpu_pct_avg == pytest.approx(minute.cpu_pct_avg)

    # and written again (a repeated flush), nothing is counted twice
    stats_history.rollup_hour(server_ids=[server.pk], hour=minute.bucket)
    assert ServerStatsHour.objects.get(server=server).net_rx_bytes == 4500


@pytest.mark.django_db(transaction=True)
def test_guests_that_are_not_paddocks_count_only_in_the_hosts_totals(host):
    # given the test driver's own domain "test" (running, not a Paddock server)
    # when two passes read the real test driver with one bulk call
    first = collect_host(host=host)
    second = collect_host(host=host)

    # then the host is reported with its one running guest and no server samples
    assert not first.skipped and not second.skipped
    assert second.guests == 1 and second.samples == 0
    assert cache.get(last_sample_key(host.pk))["servers"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_pass_already_running_for_the_host_is_not_doubled(host):
    # given the host's collector lock held by another pass
    cache.add(f"stats:lock:{host.pk}", 1, timeout=30)
    try:
        # when / then
        assert collect_host(host=host).skipped == "busy"
    finally:
        cache.delete(f"stats:lock:{host.pk}")


def test_beat_queues_passes_that_a_worker_on_the_stats_queue_runs(host, transactional_db):
    # given a worker consuming the host's stats queue only
    from celery.contrib.testing.worker import start_worker

    from config.celery import app
    from workers.tasks import collect_stats

    assert stats_queue(host) == f"{TEST_QUEUE}.stats"
    with start_worker(
        app, pool="threads", concurrency=1, queues=[stats_queue(host)], perform_ping_check=False
    ):
        # when beat's task queues a pass per host
        assert collect_stats() == 1
        deadline = time.monotonic() + 30
        while cache.get(last_sample_key(host.pk)) is None and time.monotonic() < deadline:
            time.sleep(0.1)

    # then the worker ran the pass: the host's last sample is in the cache
    assert cache.get(last_sample_key(host.pk))["id"] == host.pk


@pytest.mark.django_db(transaction=True)
def test_a_pass_reaches_sockets_on_the_pubsub_layer_in_one_pipeline(server, host, settings):
    # given channels-redis's Pub/Sub layer, and a socket on the server's group only
    use_layer(settings, "channels_redis.pubsub.RedisPubSubChannelLayer")
    name = server.domain_name
    record_pass(host=host, current=host_stats(T0, {name: record()}), publish=False)

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(server_group(server.uuid), channel)
        # when a pass publishes (from a worker's thread, as the collector does)
        result = await sync_to_async(record_pass)(
            host=host, current=host_stats(T0 + 2, {name: record(cpu_ns=10**9)})
        )
        message = await asyncio.wait_for(layer.receive(channel), 10)
        await layer.flush()
        return result, message

    result, message = async_to_sync(scenario)()

    # then the socket got the sample; only its group had a subscriber
    assert message["type"] == "stats.sample"
    assert message["sample"]["server"] == str(server.uuid)
    assert (result.samples, result.sent) == (1, 1)
