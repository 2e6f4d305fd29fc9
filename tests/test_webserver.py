"""The web server as `make run` and docker-compose start it (config/webserver.py: gunicorn
with uvicorn workers): several processes serve the API, the probes and the WebSockets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.asyncio.client import connect

from config.webserver import web_argv
from devtools.local_server import database_url, free_port
from hosting.choices import ServerState, TokenScope
from hosting.services import events
from hosting.services.tokens import issue_token

from .factories import ServerFactory

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 2


def worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@pytest.fixture
def web_server():
    """The real server on a free port, against this test's database and Redis."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
    }
    proc = subprocess.Popen(
        web_argv(bind="127.0.0.1", port=port, workers=WORKERS),
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the web server did not start: {proc.stderr.read().decode()}")
        time.sleep(0.2)
    yield proc, url
    proc.terminate()
    proc.wait(30)


def test_several_worker_processes_serve_the_api_and_the_probes(web_server, staff):
    proc, url = web_server
    # given the server started as make run starts it
    _, key = issue_token(user=staff, scope=TokenScope.BILLING)
    # then it runs the configured number of worker processes
    assert len(worker_pids(proc.pid)) == WORKERS
    # and they answer the probes and the API
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    listing = httpx.get(f"{url}/api/v1/servers/", headers={"Authorization": f"Bearer {key}"})
    assert listing.status_code == 200
    assert listing.headers["content-type"] == "application/json"
    assert listing.json()["count"] == 0


def test_server_page_socket_gets_updates_through_the_server(web_server, customer, owner):
    _, url = web_server
    # given the owner's session and a server of theirs
    server = ServerFactory(customer=customer, state=ServerState.RUNNING)
    client = Client()
    client.force_login(owner)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws_url = url.replace("http://", "ws://") + f"/ws/servers/{server.uuid}/"

    async def scenario() -> list[dict]:
        async with connect(
            ws_url, origin="http://localhost", additional_headers={"Cookie": cookie}
        ) as ws:
            # when the browser pings, and a state change is published by another process
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
            server.state = ServerState.STOPPED
            await asyncio.to_thread(events.publish_server, server)
            update = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [pong, update]

    pong, update = asyncio.run(scenario())
    # then both arrive over the socket served by a worker process
    assert pong == {"type": "pong"}
    assert update["type"] == "server.update"
    assert update["server"]["state"] == "stopped"


def test_readiness_fails_with_503_when_redis_is_down(settings, client):
    # given a Redis URL where nothing listens
    from config import health

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    health._redis.cache_clear()
    try:
        # when the probes are asked
        healthz = client.get("/healthz")
        readyz = client.get("/readyz")
    finally:
        health._redis.cache_clear()
    # then the process is healthy but not ready, and the answer says why
    assert healthz.status_code == 200
    assert readyz.status_code == 503
    assert readyz.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
