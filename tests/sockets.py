"""WebSocket clients for tests: a server's socket through the real ASGI application (its
auth middleware, consumer and the Redis channel layer), logged in as a user or not."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application

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
