"""The server page's WebSocket, through the real ASGI application and Redis channel layer."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.services import events
from hosting.services.events import FLEET_GROUP, host_group, server_group
from hosting.services.jobs import update_progress

from .factories import HostFactory, JobFactory, MembershipFactory, ServerFactory
from .sockets import session_headers, socket

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return not connected


@pytest.fixture
def server(customer):
    return ServerFactory(customer=customer, state=ServerState.RUNNING)


def test_uses_the_redis_pubsub_channel_layer():
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    assert backend == "channels_redis.pubsub.RedisPubSubChannelLayer"


def test_anonymous_socket_is_refused(server):
    assert async_to_sync(refused)(socket(server))


def test_other_customers_socket_is_refused(server, other_owner):
    # given Acme's server, when Globex's owner opens its socket, then it is closed
    assert async_to_sync(refused)(socket(server, other_owner))


def test_foreign_origin_is_refused(server, owner):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/servers/{server.uuid}/",
        headers=[(b"origin", b"http://evil.example"), *session_headers(owner)[1:]],
    )
    assert async_to_sync(refused)(communicator)


def test_job_updates_reach_the_owners_socket(server, owner, other_owner):
    # given the owner watching the server page
    job = JobFactory(server=server, kind=JobKind.REBOOT, status=JobStatus.RUNNING)
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            # when the worker records progress (the service publishes after commit)
            await sync_to_async(update_progress)(job, 40, "Rebooting")
            message = await communicator.receive_json_from(timeout=5)
            # then the browser gets it as typed JSON
            assert message == {
                "type": "job.update",
                "job": {
                    "id": job.pk,
                    "kind": "reboot",
                    "status": "running",
                    "progress": 40,
                    "message": "Rebooting",
                    "error": "",
                },
            }
            # and a state change arrives the same way
            server.state = ServerState.STOPPED
            await sync_to_async(events.publish_server)(server)
            message = await communicator.receive_json_from(timeout=5)
            assert message["type"] == "server.update"
            assert message["server"]["state"] == "stopped"
            assert message["server"]["uuid"] == str(server.uuid)
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_updates_of_other_servers_do_not_arrive(server, owner, customer):
    other = ServerFactory(customer=customer)
    other_job = JobFactory(server=other, status=JobStatus.RUNNING)
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await sync_to_async(update_progress)(other_job, 50, "Elsewhere")
            await asyncio.sleep(0.3)
            assert await communicator.receive_nothing(timeout=0.5)
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_staff_may_watch_any_server(server, staff):
    communicator = socket(server, staff)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)()


def sample(server, t: float = 1.0) -> dict:
    """A per-server sample as the collector publishes it (the contract in HELPERS.md)."""
    return {
        "type": "stats.sample",
        "sample": {
            "server": str(server.uuid),
            "t": t,
            "cpu_pct": 12.5,
            "mem_used_mib": 300,
            "mem_total_mib": 1024,
            "disk_rd_bps": 0.0,
            "disk_wr_bps": 4096.0,
            "disk_rd_iops": 0.0,
            "disk_wr_iops": 1.0,
            "net_rx_bps": 800.0,
            "net_tx_bps": 200.0,
            "net_rx_pps": 10.0,
            "net_tx_pps": 3.0,
        },
    }


def host_sample(host) -> dict:
    return {
        "type": "stats.host",
        "host": {
            "id": host.pk,
            "name": host.name,
            "t": 1.0,
            "cpu_pct": 50.0,
            "vcpus_used": 2,
            "vcpus_capacity": 8,
            "mem_used_mib": 1024,
            "mem_capacity_mib": 8192,
            "disk_used_gib": 10,
            "disk_capacity_gib": 100,
            "servers": 1,
            "top": [],
        },
    }


async def publish(group: str, message: dict) -> None:
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(group, message)


def test_samples_reach_the_owners_socket(server, owner):
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await publish(server_group(server.uuid), sample(server))
            assert await communicator.receive_json_from(timeout=5) == sample(server)
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_the_decision_is_kept_in_memory_not_asked_per_message(server, owner):
    """Access is checked on subscribe only: a membership that disappears without its
    revocation event (raw SQL, no signal) does not stop the samples. This is what the
    revocation events are for, and why a sample costs no database query."""
    from django.db import connection

    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:

            def drop_silently():
                with connection.cursor() as cursor:
                    cursor.execute("DELETE FROM hosting_membership WHERE user_id = %s", [owner.pk])

            await sync_to_async(drop_silently)()
            await publish(server_group(server.uuid), sample(server, 2.0))
            message = await communicator.receive_json_from(timeout=5)
            assert message["sample"]["t"] == 2.0
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


async def closes_after(communicator, server, revoke) -> None:
    """Given a socket receiving samples, when `revoke` runs, then the socket is closed
    with the revocation code and the next sample is not sent."""
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await publish(server_group(server.uuid), sample(server, 1.0))
    assert (await communicator.receive_json_from(timeout=5))["sample"]["t"] == 1.0
    await sync_to_async(revoke)()
    await publish(server_group(server.uuid), sample(server, 2.0))
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4403}
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


def test_socket_closes_when_the_membership_is_removed(server, owner):
    communicator = socket(server, owner)
    async_to_sync(closes_after)(communicator, server, lambda: owner.memberships.all().delete())


def test_socket_closes_when_the_user_is_deactivated(server, owner):
    def deactivate():
        owner.is_active = False
        owner.save()

    async_to_sync(closes_after)(socket(server, owner), server, deactivate)


def test_socket_closes_when_the_customer_is_suspended(server, owner, customer):
    def suspend():
        customer.status = "suspended"
        customer.save()

    async_to_sync(closes_after)(socket(server, owner), server, suspend)


def test_a_member_of_two_customers_keeps_the_other_customers_socket(server, owner, other_customer):
    # given the owner is also a member of Globex and watches a Globex server
    MembershipFactory(user=owner, customer=other_customer)
    theirs = ServerFactory(customer=other_customer, state=ServerState.RUNNING)
    communicator = socket(theirs, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            # when Acme is suspended, then the Globex socket re-checks and stays open
            def suspend():
                server.customer.status = "suspended"
                server.customer.save()

            await sync_to_async(suspend)()
            await publish(server_group(theirs.uuid), sample(theirs, 3.0))
            assert (await communicator.receive_json_from(timeout=5))["sample"]["t"] == 3.0
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_login_elsewhere_does_not_close_the_socket(server, owner):
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await sync_to_async(lambda: Client().force_login(owner))()
            await publish(server_group(server.uuid), sample(server, 4.0))
            assert (await communicator.receive_json_from(timeout=5))["sample"]["t"] == 4.0
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_another_customer_cannot_subscribe_to_the_stream(server, other_owner):
    # given Globex's owner, when they open Acme's server stream, then it is refused and a
    # sample published afterwards reaches no socket of theirs
    assert async_to_sync(refused)(socket(server, other_owner))
    unknown = WebsocketCommunicator(
        application, f"/ws/servers/{uuid.uuid4()}/", headers=session_headers(other_owner)
    )
    # the same refusal as for a server that does not exist
    assert async_to_sync(refused)(unknown)


def staff_socket(path: str, user) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=session_headers(user))


def test_staff_receive_host_and_fleet_stats(staff):
    host = HostFactory()
    fleet = staff_socket("/ws/fleet/", staff)
    one = staff_socket(f"/ws/hosts/{host.pk}/", staff)

    async def scenario():
        assert (await fleet.connect(timeout=5))[0]
        assert (await one.connect(timeout=5))[0]
        try:
            await publish(FLEET_GROUP, host_sample(host))
            await publish(host_group(host.pk), host_sample(host))
            assert await fleet.receive_json_from(timeout=5) == host_sample(host)
            assert await one.receive_json_from(timeout=5) == host_sample(host)
        finally:
            await fleet.disconnect()
            await one.disconnect()

    async_to_sync(scenario)()


def test_customers_cannot_watch_hosts_or_the_fleet(owner):
    host = HostFactory()
    assert async_to_sync(refused)(staff_socket("/ws/fleet/", owner))
    assert async_to_sync(refused)(staff_socket(f"/ws/hosts/{host.pk}/", owner))
    assert async_to_sync(refused)(staff_socket("/ws/fleet/", None))


def test_fleet_socket_closes_when_staff_status_is_withdrawn(staff):
    fleet = staff_socket("/ws/fleet/", staff)

    async def scenario():
        assert (await fleet.connect(timeout=5))[0]

        def demote():
            staff.is_staff = False
            staff.save()

        await sync_to_async(demote)()
        output = await fleet.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": 4403}
        await fleet.disconnect()

    async_to_sync(scenario)()


# --- the serial console over the socket ---------------------------------------------------


def test_console_comes_whole_then_appended(server, owner):
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    from hosting.services import console

    first = console.ConsoleTail(text="boot\n<b>x</b>\n", fetched_at=timezone.now())
    cache.set(f"console:{server.uuid}", first.__dict__)
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            # given a page that asks for the console: the whole cached tail
            await communicator.send_json_to({"type": "console"})
            whole = await communicator.receive_json_from(timeout=5)
            assert whole["type"] == "console.tail" and whole["reset"]
            assert whole["text"] == "boot\n<b>x</b>\n"
            assert whole["at"] == first.fetched_at.isoformat()
            # when a worker stores a newer read: only what was appended, after what it follows
            later = console.ConsoleTail(
                text=first.text + "ready\n", fetched_at=first.fetched_at + timedelta(seconds=2)
            )
            await sync_to_async(console.store)(server, later, previous=first)
            append = await communicator.receive_json_from(timeout=5)
            assert (append["text"], append["reset"]) == ("ready\n", False)
            assert append["since"] == whole["at"] and append["at"] == later.fetched_at.isoformat()
            # a read that changed nothing sends nothing
            same = console.ConsoleTail(text=later.text, fetched_at=timezone.now())
            await sync_to_async(console.store)(server, same, previous=later)
            assert await communicator.receive_nothing(timeout=0.3)
            # and asked again, the whole tail
            await communicator.send_json_to({"type": "console"})
            again = await communicator.receive_json_from(timeout=5)
            assert again["reset"] and again["text"] == later.text
        finally:
            await communicator.disconnect()
        cache.delete(f"console:{server.uuid}")

    async_to_sync(scenario)()


def test_a_first_read_of_a_silent_console_is_sent_too(server, owner):
    from django.core.cache import cache
    from django.utils import timezone

    from hosting.services import console

    cache.delete(f"console:{server.uuid}")
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await communicator.send_json_to({"type": "console"})
            never = await communicator.receive_json_from(timeout=5)
            assert (never["text"], never["at"]) == ("", "")  # not read yet
            # when the first read finds nothing printed: the page learns it was read
            empty = console.ConsoleTail(text="", fetched_at=timezone.now())
            await sync_to_async(console.store)(server, empty, previous=console.cached_tail(server))
            read = await communicator.receive_json_from(timeout=5)
            assert (read["text"], read["at"]) == ("", empty.fetched_at.isoformat())
        finally:
            await communicator.disconnect()
        cache.delete(f"console:{server.uuid}")

    async_to_sync(scenario)()


def test_following_the_console_asks_a_worker_for_fresh_reads(server, owner, settings):
    """While a page follows the console, its socket asks for a read every refresh period
    (at most one in flight per server): the worker's `fetch_console` on the host's queue."""
    from django.core.cache import cache

    settings.CONSOLE_REFRESH_SECONDS = 1
    pending = f"console:{server.uuid}:pending"
    cache.delete(pending)
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            assert await sync_to_async(cache.get)(pending) is None
            await communicator.send_json_to({"type": "console"})
            await communicator.receive_json_from(timeout=5)
            assert await sync_to_async(cache.get)(pending)  # asked on subscribe
            await sync_to_async(cache.delete)(pending)
            await asyncio.sleep(1.5)
            assert await sync_to_async(cache.get)(pending)  # and again a period later
        finally:
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_console_appends_survive_a_sliding_window():
    from datetime import UTC, datetime

    from hosting.services.console import ConsoleTail, tail_message

    server = ServerFactory.build()
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    lines = "".join(f"line {n}\n" for n in range(200))
    before = ConsoleTail(text=lines[-1000:], fetched_at=t1)
    after = ConsoleTail(text=(lines + "new 1\nnew 2\n")[-1000:], fetched_at=t2)
    message = tail_message(server, after, previous=before)
    assert (message["text"], message["reset"]) == ("new 1\nnew 2\n", False)
    # an end that shows up twice in the new window: ambiguous, so the whole tail
    loop = ConsoleTail(text="tick\n" * 300, fetched_at=t1)
    slid = ConsoleTail(text=("tick\n" * 301)[-1400:], fetched_at=t2)
    assert tail_message(server, slid, previous=loop)["reset"] is True
    # and a new text the old end is not found in
    other = ConsoleTail(text="rebooted\n", fetched_at=t2)
    assert tail_message(server, other, previous=before)["reset"] is True
