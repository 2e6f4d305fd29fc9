"""Driving real guests through the REST API in system tests: wait for jobs, act, read
the serial console, ask the host's libvirtd."""

from __future__ import annotations

import re
import subprocess
import time

from hosting.models import Host, Server
from testbed.layout import TestbedHost

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


# --- guests that move: their heartbeat continues, their domain runs on one host ---------------
HEARTBEAT = re.compile(r"paddock-guest heartbeat=(\d+)")


def wait_text(read, pattern: str, *, count: int = 1, timeout: float = BOOT_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        if len(re.findall(pattern, text)) >= count:
            return text
        assert time.monotonic() < deadline, f"{pattern!r} x{count} not seen:\n{text[-3000:]}"
        time.sleep(1)


def beats(text: str) -> list[int]:
    return [int(n) for n in HEARTBEAT.findall(text)]


def assert_kept_running(read, before: str) -> None:
    """After a move: more heartbeats, in order, and no boot since `before` was read."""
    seen = len(beats(before))
    text = wait_text(read, HEARTBEAT.pattern, count=seen + 2, timeout=60)
    counts = beats(text)
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    assert counts[-1] > beats(before)[-1]
    assert text.count(" ready") == before.count(" ready"), "the guest booted again"


def domains(host: Host) -> list[str]:
    return virsh(host, "list", "--all", "--name").split()


def running(host: Host) -> list[str]:
    return virsh(host, "list", "--name").split()


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


# --- snapshots and backups: jobs from a 202, and the disk seen from inside the host --------
def succeeded(client, resp) -> dict:
    """The job of a 202 response, once it ended; it must have succeeded."""
    assert resp.status_code == 202, resp.content
    job = wait_job(client, resp.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    return {**resp.json(), **job}


def testbed_host(host: Host) -> TestbedHost:
    return TestbedHost(int(host.name.removeprefix("tb-hv")))


def on_host(host: Host, *command: str) -> str:
    """Run a command in the host's mount namespace (its libvirtd's), where the paths of
    its volumes are the ones libvirt reports."""
    pid = testbed_host(host).pidfile.read_text().strip()
    done = subprocess.run(
        ["nsenter", "-t", pid, "-m", *command], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command} failed: {done.stderr or done.stdout}"
    return done.stdout


def disk_top(server: Server) -> str:
    """The file a server's guest writes to (the top of its disk's qcow2 chain)."""
    from hosting.backends import get_backend

    backend = get_backend(server.host)
    return backend._chain(backend.conn.lookupByName(server.domain_name))[0]  # type: ignore[attr-defined]


def write_pattern(server: Server, byte: int, offset: int, length: int) -> None:
    """Write `length` bytes of `byte` at `offset` of the stopped guest's disk."""
    command = f"write -P {byte:#x} {offset} {length}"
    on_host(server.host, "qemu-io", "-f", "qcow2", "-c", command, disk_top(server))


def has_pattern(server: Server, byte: int, offset: int, length: int) -> bool:
    pid = testbed_host(server.host).pidfile.read_text().strip()
    done = subprocess.run(
        ["nsenter", "-t", pid, "-m", "qemu-io", "-f", "qcow2", "-r", "-c",
         f"read -P {byte:#x} {offset} {length}", disk_top(server)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def disk_sha256(server: Server) -> str:
    """The sha256 of what the stopped guest sees on its disk (the whole chain, as raw)."""
    raw = f"/tmp/paddock-disk-{server.uuid}.raw"
    try:
        top = disk_top(server)
        on_host(server.host, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", top, raw)
        return on_host(server.host, "sha256sum", raw).split()[0]
    finally:
        on_host(server.host, "rm", "-f", raw)
