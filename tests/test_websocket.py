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


def test_uses_the_redis_channel_layer():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


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
