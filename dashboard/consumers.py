"""WebSocket consumers: live job progress, state and stats for the server page; host and
fleet stats for staff.

Authorization is decided once, when a socket subscribes (the same visibility rules as the
HTTP views: hosting.access), and kept in memory: forwarding a message costs no database
query, which is what lets one process carry thousands of sockets at a sample a second.
Every socket also joins its user's group (`user.<id>`); whatever withdraws access
(membership removed, user deactivated, customer suspended: hosting.services.revocation)
sends `access.changed` there, and the socket re-checks and closes (code 4403) when it may
no longer watch. Messages are handled one at a time, so nothing sent after the revocation
reaches the browser.

- /ws/servers/<uuid>/: the server's group; the server's customer must be visible to the
  user (staff see every server). Messages: job.update, server.update, stats.sample, and
  console.tail. A page showing the serial console sends {"type": "console"}: it gets the
  cached tail at once, and while it stays a worker reads a fresh tail every
  CONSOLE_REFRESH_SECONDS (hosting.services.console); what changed arrives as
  console.tail on the server's group.
- /ws/hosts/<id>/ and /ws/fleet/: staff only; stats.host.
A socket that may not subscribe is refused before the handshake completes (the browser
sees the same refusal for a server that does not exist as for another customer's).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuid_lib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from hosting.access import access_for
from hosting.models import Host, Server
from hosting.services import console
from hosting.services.events import FLEET_GROUP, host_group, server_group, user_group

# The close code a browser gets when its access was withdrawn: it stops reconnecting.
CLOSE_REVOKED = 4403

# Messages forwarded as they are, without a database: they skip the thread hop that
# channels' dispatch makes before every handler to close stale database connections
# (half of the web process's work per sample at 2,000 sockets).
FORWARDED = frozenset({"job.update", "server.update", "stats.sample", "stats.host", "console.tail"})


def current_user(user: Any) -> Any | None:
    """The user as the database has it now (active only), not as the session cached it."""
    if user is None or not user.is_authenticated:
        return None
    return get_user_model().objects.filter(pk=user.pk, is_active=True).first()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """A socket that subscribes to some groups after an access check (`may_watch`, run in
    a thread with the database) and forwards what they carry as JSON."""

    groups_joined: list[str]
    allowed: bool = False
    # the message types this socket forwards (FORWARDED, less what its groups never carry)
    forwarded: frozenset[str] = frozenset()

    def target(self) -> Any | None:
        """What the URL names (None: refused)."""
        raise NotImplementedError

    def may_watch(self, user: Any, target: Any) -> bool:
        """Asked with the current user row; runs in a thread (database access allowed)."""
        raise NotImplementedError

    def subscriptions(self, target: Any) -> list[str]:
        raise NotImplementedError

    async def dispatch(self, message: dict) -> None:
        if message["type"] in self.forwarded:
            await self.forward(message)
        else:
            await super().dispatch(message)

    async def _check(self) -> bool:
        def check() -> bool:
            user = current_user(self.scope.get("user"))
            return user is not None and self.may_watch(user, self.watched)

        return await database_sync_to_async(check)()

    async def connect(self) -> None:
        self.groups_joined = []
        self.watched = self.target()
        if self.watched is None or not await self._check():
            await self.close()
            return
        user = self.scope["user"]
        self.groups_joined = [*self.subscriptions(self.watched), user_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.allowed = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        self.allowed = False
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket is one-way; a browser's "ping" gets a "pong" to keep proxies happy.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def access_changed(self, event: dict) -> None:
        """A revocation event for this user: re-check, close if no longer allowed."""
        if self.allowed and not await self._check():
            self.allowed = False
            await self.close(code=CLOSE_REVOKED)

    async def forward(self, event: dict) -> None:
        # the channel-layer message is already the browser's typed payload
        if self.allowed:
            await self.send_json(event)


class ServerConsumer(LiveConsumer):
    forwarded = FORWARDED - {"stats.host"}
    console_task: asyncio.Task | None = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        wants_console = isinstance(content, dict) and content.get("type") == "console"
        if not wants_console:
            await super().receive_json(content, **kwargs)
        elif not self.allowed:
            return
        elif self.console_task is None:
            self.console_task = asyncio.ensure_future(self.follow_console())
        else:  # asked again (the browser missed a read): the whole tail
            await self.send_console()

    async def send_console(self) -> None:
        message = await database_sync_to_async(console.current_message)(self.watched)
        if message is not None and self.allowed:
            await self.send_json(message)

    async def follow_console(self) -> None:
        """The cached tail now, then a fresh read asked for while the socket stays."""
        await self.send_console()
        while self.allowed:
            await asyncio.sleep(settings.CONSOLE_REFRESH_SECONDS)
            if self.allowed:
                await database_sync_to_async(console.request_refresh_of)(self.watched)

    async def disconnect(self, code: int) -> None:
        if self.console_task is not None:
            self.console_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.console_task
            self.console_task = None
        await super().disconnect(code)

    def target(self) -> uuid_lib.UUID | None:
        try:
            return uuid_lib.UUID(str(self.scope["url_route"]["kwargs"]["uuid"]))
        except ValueError:
            return None

    def may_watch(self, user: Any, target: Any) -> bool:
        return Server.objects.visible_to(access_for(user)).filter(uuid=target).exists()

    def subscriptions(self, target: Any) -> list[str]:
        return [server_group(target)]

    async def job_update(self, event: dict) -> None:
        await self.forward(event)

    async def server_update(self, event: dict) -> None:
        await self.forward(event)

    async def stats_sample(self, event: dict) -> None:
        await self.forward(event)


class HostConsumer(LiveConsumer):
    """One host's stats (staff)."""

    forwarded = frozenset({"stats.host"})

    def target(self) -> int | None:
        return int(self.scope["url_route"]["kwargs"]["host_id"])

    def may_watch(self, user: Any, target: Any) -> bool:
        return bool(user.is_staff) and Host.objects.filter(pk=target).exists()

    def subscriptions(self, target: Any) -> list[str]:
        return [host_group(target)]

    async def stats_host(self, event: dict) -> None:
        await self.forward(event)


class FleetConsumer(LiveConsumer):
    """Every host's stats (staff)."""

    forwarded = frozenset({"stats.host"})

    def target(self) -> str:
        return FLEET_GROUP

    def may_watch(self, user: Any, target: Any) -> bool:
        return bool(user.is_staff)

    def subscriptions(self, target: Any) -> list[str]:
        return [FLEET_GROUP]

    async def stats_host(self, event: dict) -> None:
        await self.forward(event)
