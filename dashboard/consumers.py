"""WebSocket consumers: live job progress and state for the server page.

A socket joins a server's group only after the access check that the HTTP views use;
an anonymous user or another customer's user is closed before the handshake completes.
Messages come from hosting.services.events (sent after commit) and are forwarded as
JSON: {"type": "job.update", "job": {...}} and {"type": "server.update", "server": {...}}.
"""

from __future__ import annotations

import uuid as uuid_lib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from hosting.access import access_for
from hosting.models import Server
from hosting.services.events import server_group


@database_sync_to_async
def may_watch(user, server_uuid: uuid_lib.UUID) -> bool:
    """Asked at connect and again before every message: a user removed from the customer,
    deactivated, or whose customer was suspended stops receiving at once."""
    if user is None or not user.is_authenticated:
        return False
    user.refresh_from_db(fields=["is_active", "is_staff"])
    user._paddock_customer_ids = None  # memberships may have changed since
    return Server.objects.visible_to(access_for(user)).filter(uuid=server_uuid).exists()


class ServerConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    server_uuid: uuid_lib.UUID | None = None

    async def connect(self) -> None:
        try:
            server_uuid = uuid_lib.UUID(str(self.scope["url_route"]["kwargs"]["uuid"]))
        except ValueError:
            await self.close()
            return
        if not await may_watch(self.scope.get("user"), server_uuid):
            await self.close()
            return
        self.server_uuid = server_uuid
        self.group = server_group(server_uuid)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # The socket is one-way; a browser's "ping" gets a "pong" to keep proxies happy.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _still_allowed(self) -> bool:
        assert self.server_uuid is not None
        if await may_watch(self.scope.get("user"), self.server_uuid):
            return True
        await self.close()
        return False

    async def job_update(self, event: dict) -> None:
        if await self._still_allowed():
            await self.send_json({"type": "job.update", "job": event["job"]})

    async def server_update(self, event: dict) -> None:
        if await self._still_allowed():
            await self.send_json({"type": "server.update", "server": event["server"]})
