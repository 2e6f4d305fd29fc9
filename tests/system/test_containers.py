"""A container server's whole life on the testbed's LXC hosts, through the REST API and a
real worker: create, start, stats, console, the memory limit, stop, snapshot and revert,
backup and restore, a move to the other host, terminate (issue 11, acceptance 1).

The hosts are the testbed's network namespaces, reached over SSH (lxc+ssh://) as a
production host would be; one container serves every check (each step builds on the
last, as a customer's server lives)."""

from __future__ import annotations

import re
import time

import pytest

from hosting.backends import PowerState, get_backend
from hosting.choices import ServerState
from hosting.models import Backup, Host, Server, SSHKey
from hosting.services.collector import collect_host
from testbed import layout

from .guests import act, console, create, succeeded, wait_console, wait_job

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def inside(server: Server, *command: str, timeout: float = 60) -> dict:
    """Run a command in the container (lxc-attach on its host, over SSH)."""
    return get_backend(server.host).exec(server.domain_name, *command, timeout=timeout)


def sh(server: Server, script: str) -> str:
    done = inside(server, "/bin/sh", "-c", script)
    assert done["status"] == 0, done
    return done["stdout"]


def sample_of(server: Server) -> dict:
    """The server's live sample from two collector passes over its host."""
    collect_host(host=server.host, publish=False)
    sh(server, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")  # some CPU time
    time.sleep(1)
    result = collect_host(host=server.host, publish=False)
    found = [
        p["sample"]
        for _group, p in result.messages
        if p["type"] == "stats.sample" and str(p["sample"]["server"]) == str(server.uuid)
    ]
    assert found, result
    return found[0]


def test_a_container_server_lives_its_whole_life(
    container_hosts, celery_worker, billing_client, customer, container_plan, container_image,
    settings, tmp_path,
):  # fmt: skip
    settings.BACKUP_STORE = str(tmp_path / "store")
    settings.BACKUP_STAGING = str(tmp_path / "staging")
    container_plan.snapshot_slots = 2
    container_plan.backup_slots = 2
    container_plan.swap_mib = 0
    container_plan.save()
    client = billing_client
    public = layout.ssh_key().with_suffix(".pub").read_text().strip()
    resp = client.post(
        "/api/v1/ssh-keys/", {"customer": customer.pk, "name": "box", "public_key": public},
        format="json",
    )  # fmt: skip
    assert resp.status_code == 201, resp.content
    key = SSHKey.objects.get(customer=customer, name="box")

    # create: the container runs on a container host, with its name, address and key
    uuid, job = create(client, customer, container_plan, container_image, "box", [key])
    server = Server.objects.select_related("host").get(uuid=uuid)
    assert server.host.kind == "container" and server.state == ServerState.RUNNING
    address = str(server.addresses.get().address)
    ready = rf"paddock-guest hostname=box ip={re.escape(address)} ready"
    wait_console(client, uuid, ready, timeout=60)
    assert sh(server, "hostname").strip() == "box"
    assert public in sh(server, "cat /root/.ssh/authorized_keys")
    print(f"container provisioned: {job['log'][-1] if job.get('log') else job}")

    # stats: the same stream as a VM's, from cgroup and veth counters
    sample = sample_of(server)
    assert sample["cpu_pct"] > 0, sample
    assert sample["mem_total_mib"] == container_plan.memory_mib, sample

    # the memory limit holds: a process allocating past the plan's memory is killed, the
    # container (and its host) go on
    hog = inside(server, "/bin/sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a)")
    assert hog["status"] == 137, hog  # SIGKILL from the OOM killer
    assert server.host and get_backend(server.host).state(server.domain_name) == "running"
    assert sh(server, "echo alive").strip() == "alive"

    # stop, then a snapshot of the stopped container; a change after it is reverted
    act(client, uuid, "stop")
    resp = client.post(f"/api/v1/servers/{uuid}/snapshots/", {"name": "clean"}, format="json")
    snap = succeeded(client, resp)["snapshot"]
    act(client, uuid, "start")
    wait_console(client, uuid, ready, count=2, timeout=60)
    sh(server, "echo changed > /root/marker && sync")
    act(client, uuid, "stop")
    succeeded(client, client.post(f"/api/v1/servers/{uuid}/snapshots/{snap}/revert/"))
    act(client, uuid, "start")
    assert inside(server, "cat", "/root/marker")["status"] != 0, "the revert kept the change"

    # a memory snapshot is refused with the reason: containers keep no memory state
    resp = client.post(
        f"/api/v1/servers/{uuid}/snapshots/", {"name": "mem", "with_memory": True}, format="json"
    )
    assert resp.status_code == 400 and "disk snapshots only" in resp.content.decode()

    # backup (a tar of the root file system, taken while it runs), a change, restore
    sh(server, "echo kept > /root/marker && sync")
    job = succeeded(client, client.post(f"/api/v1/servers/{uuid}/backups/", {}, format="json"))
    record = Backup.objects.get(uuid=job["backup"])
    assert record.kind == "full" and record.manifest["disks"][0]["format"] == "tar"
    sh(server, "echo lost > /root/marker && sync")
    act(client, uuid, "stop")
    succeeded(client, client.post(f"/api/v1/backups/{record.uuid}/restore/"))
    act(client, uuid, "start")
    assert sh(server, "cat /root/marker").strip() == "kept"

    # move to the other host: stopped, sent, started there; the disk and address follow
    source = server.host
    boots = console(client, uuid).count(" ready")
    other = Host.objects.filter(kind="container").exclude(pk=source.pk).get()
    resp = client.post(
        f"/api/v1/servers/{uuid}/migrate/", {"target_host": other.name}, format="json"
    )
    moved = succeeded(client, resp)
    print(f"container moved: {moved['result']}")
    server.refresh_from_db()
    assert server.host == other and server.state == ServerState.RUNNING
    assert get_backend(source).state(server.domain_name) == PowerState.MISSING
    assert sh(server, "cat /root/marker").strip() == "kept"
    assert str(server.addresses.get().address) == address
    wait_console(client, uuid, ready, count=boots + 1, timeout=60)  # its log came along

    # terminate: nothing of it is left on either host
    resp = client.delete(f"/api/v1/servers/{uuid}/")
    assert resp.status_code == 202, resp.content
    assert wait_job(client, resp.json()["id"])["status"] == "succeeded"
    for host in (source, other):
        assert server.domain_name not in get_backend(host).domain_states()
