"""The server page's WebSocket, through the real ASGI application and Redis channel layer."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.services import events
from hosting.services.jobs import update_progress

from .factories import JobFactory, ServerFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def session_headers(user=None) -> list[tuple[bytes, bytes]]:
    headers = [ORIGIN]
    if user is not None:
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        headers.append((b"cookie", f"{name}={client.cookies[name].value}".encode()))
    return headers


def socket(server, user=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/servers/{server.uuid}/", headers=session_headers(user)
    )


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


def test_socket_closes_when_access_is_withdrawn(server, owner):
    # given the owner watching the server page
    job = JobFactory(server=server, kind=JobKind.REBOOT, status=JobStatus.RUNNING)
    communicator = socket(server, owner)

    async def scenario():
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        # when the user is removed from the customer while the page is open
        await sync_to_async(lambda: owner.memberships.all().delete())()
        await sync_to_async(update_progress)(job, 60, "Rebooting")
        # then the update is not sent and the socket is closed
        output = await communicator.receive_output(timeout=5)
        assert output["type"] == "websocket.close"
        await communicator.disconnect()

    async_to_sync(scenario)()
