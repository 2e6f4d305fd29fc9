"""Typed messages pushed to browsers over the channel layer, sent after commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from ..models import Job, Server
from .public_messages import customer_message

log = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def server_group(server_uuid: Any) -> str:
    return f"server.{server_uuid}"


def customer_group(customer_id: int) -> str:
    return f"customer.{customer_id}"


def host_group(host_id: int) -> str:
    return f"host.{host_id}"


# every host's samples (stats.host), for the staff fleet page
FLEET_GROUP = "fleet"


def job_payload(job: Job) -> dict[str, Any]:
    # the customer's group gets it too: texts without infrastructure detail
    hosts = [job.host.name] if job.host_id and job.host is not None else []
    return {
        "type": "job.update",
        "job": {
            "id": job.pk,
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "message": customer_message(job.message, hosts=hosts),
            "error": customer_message(job.error, hosts=hosts),
        },
    }


def server_payload(server: Server) -> dict[str, Any]:
    return {
        "type": "server.update",
        "server": {
            "uuid": str(server.uuid),
            "state": server.display_state,
            "hostname": server.hostname,
        },
    }


def _send(groups: list[str], payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    send = async_to_sync(layer.group_send)
    for group in groups:
        try:
            send(group, payload)
        except Exception:  # the broker being down must not fail the job itself
            log.warning("could not publish %s to %s", payload["type"], group, exc_info=True)


def publish_job(job: Job) -> None:
    payload = job_payload(job)
    groups = [job_group(job.pk)]
    server = job.server if job.server_id else None
    if server is not None:
        groups += [server_group(server.uuid), customer_group(server.customer_id)]
    transaction.on_commit(lambda: _send(groups, payload))


def publish_server(server: Server) -> None:
    payload = server_payload(server)
    groups = [server_group(server.uuid), customer_group(server.customer_id)]
    transaction.on_commit(lambda: _send(groups, payload))


# at most this many group sends in flight at once (one Redis round trip each)
SEND_CONCURRENCY = 8


def send_many(messages: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Send many (group, payload) messages now, in one event loop. On channels-redis's
    Pub/Sub layer every PUBLISH goes in one pipeline per Redis shard (one round trip for
    the collector's thousands of samples a pass); on its list layer only groups that have
    members (asked in one pipeline) get a group_send, SEND_CONCURRENCY at a time. Returns
    how many messages reached a group with members; a failed send is logged and skipped
    (the next sample replaces it)."""
    layer = get_channel_layer()
    batch = list(messages)
    if layer is None or not batch:
        return 0

    async def send_all() -> int:
        published = await _publish_pipelined(layer, batch)
        if published is not None:
            return published
        gate = asyncio.Semaphore(SEND_CONCURRENCY)
        wanted = await _occupied(layer, {group for group, _ in batch})

        async def one(group: str, payload: dict[str, Any]) -> bool:
            async with gate:
                try:
                    await layer.group_send(group, payload)
                except Exception:
                    log.warning("could not publish %s to %s", payload["type"], group, exc_info=True)
                    return False
                return True

        done = await asyncio.gather(
            *(one(group, payload) for group, payload in batch if group in wanted)
        )
        return sum(done)

    return async_to_sync(send_all)()


async def _occupied(layer: Any, groups: set[str]) -> set[str]:
    """The groups that have members. On channels-redis one pipelined EXISTS per Redis
    shard; another layer (the in-memory one) gets every group."""
    group_key = getattr(layer, "_group_key", None)
    if group_key is None or not hasattr(layer, "consistent_hash"):
        return groups
    by_shard: dict[int, list[str]] = {}
    for group in groups:
        by_shard.setdefault(layer.consistent_hash(group), []).append(group)
    occupied: set[str] = set()
    try:
        for index, names in by_shard.items():
            pipe = layer.connection(index).pipeline(transaction=False)
            for name in names:
                pipe.exists(group_key(name))
            found = await pipe.execute()
            occupied.update(name for name, n in zip(names, found, strict=True) if n)
    except Exception:  # unknown internals of a future channels-redis: send to all
        log.warning("could not ask which groups have members", exc_info=True)
        return groups
    return occupied


async def _publish_pipelined(layer: Any, batch: list[tuple[str, dict[str, Any]]]) -> int | None:
    """channels-redis's RedisPubSubChannelLayer: each shard's PUBLISHes in one pipeline,
    under the shard's lock as its own publish takes it. None for any other layer."""
    get_loop_layer = getattr(layer, "_get_layer", None)
    if get_loop_layer is None or not hasattr(layer, "serialize"):
        return None
    try:
        loop_layer = get_loop_layer()
        by_shard: dict[int, tuple[Any, list[tuple[str, bytes]]]] = {}
        for group, payload in batch:
            channel = loop_layer._get_group_channel_name(group)
            shard = loop_layer._get_shard(channel)
            by_shard.setdefault(id(shard), (shard, []))[1].append(
                (channel, layer.serialize(payload))
            )
    except AttributeError:  # not the Pub/Sub layer (or its internals changed)
        return None
    reached = 0
    for shard, items in by_shard.values():
        try:
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel, data in items:
                    pipe.publish(channel, data)
                receivers = await pipe.execute()
        except Exception:
            log.warning("could not publish %d messages", len(items), exc_info=True)
            continue
        reached += sum(1 for n in receivers if n)
    return reached


def user_group(user_id: int) -> str:
    """Every socket of a user joins this group: it carries only `access.changed`, the
    cue to re-check what the socket may watch (hosting.services.revocation)."""
    return f"user.{user_id}"


def publish_access_changed(user_ids: list[int], reason: str) -> None:
    """Tell the sockets of these users to re-check their access (after commit)."""
    if not user_ids:
        return
    payload = {"type": "access.changed", "reason": reason}
    groups = [user_group(user_id) for user_id in sorted(set(user_ids))]
    transaction.on_commit(lambda: _send(groups, payload))
