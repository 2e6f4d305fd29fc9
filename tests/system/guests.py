"""Driving real guests through the REST API in system tests: wait for jobs, act, read
the serial console, ask the host's libvirtd."""

from __future__ import annotations

import re
import subprocess
import time

from hosting.models import Host

BOOT_TIMEOUT = 180


def wait_job(client, job_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/jobs/{job_id}/").json()
        if body["status"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body['status']}: {body['log']}"
        time.sleep(0.5)


def act(client, server_uuid: str, action: str) -> dict:
    resp = client.post(f"/api/v1/servers/{server_uuid}/{action}/")
    assert resp.status_code == 202, resp.content
    job = wait_job(client, resp.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def console(client, server_uuid: str) -> str:
    return client.get(f"/api/v1/servers/{server_uuid}/console/").json()["text"]


def wait_console(
    client, server_uuid: str, pattern: str, *, count: int = 1, timeout: float = BOOT_TIMEOUT
) -> str:
    """Wait until `pattern` appears `count` times on the serial console; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        text = console(client, server_uuid)
        if len(re.findall(pattern, text)) >= count:
            return text
        assert time.monotonic() < deadline, f"{pattern!r} x{count} not seen:\n{text[-3000:]}"
        time.sleep(1)


def heartbeats_after_last_ready(text: str) -> list[int]:
    tail = text.rsplit(" ready", 1)[-1]
    return [int(n) for n in re.findall(r"paddock-guest heartbeat=(\d+)", tail)]


def virsh(host: Host, *args: str) -> str:
    return subprocess.run(
        ["virsh", "-q", "-c", host.libvirt_uri, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def create(client, customer, plan, image, hostname, ssh_keys=()) -> tuple[str, dict]:
    resp = client.post(
        "/api/v1/servers/",
        {
            "customer": customer.pk,
            "plan": plan.pk,
            "image": image.pk,
            "hostname": hostname,
            "ssh_keys": [k.pk for k in ssh_keys],
        },
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job = wait_job(client, resp.json()["id"])
    assert job["status"] == "succeeded", job
    return job["server"], job
