"""Typed messages pushed to browsers over the channel layer, sent after commit."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from ..models import Job, Server

log = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def server_group(server_uuid: Any) -> str:
    return f"server.{server_uuid}"


def customer_group(customer_id: int) -> str:
    return f"customer.{customer_id}"


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "type": "job.update",
        "job": {
            "id": job.pk,
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "error": job.error,
        },
    }


def server_payload(server: Server) -> dict[str, Any]:
    return {
        "type": "server.update",
        "server": {"uuid": str(server.uuid), "state": server.state, "hostname": server.hostname},
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
