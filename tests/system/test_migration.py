"""Migration of real guests between the two testbed hosts, through the REST API and a real
worker: live over shared storage and with the disks copied, a failed pre-check, a
cancelled migration, one that does not converge (escalated, then given up at its time
limit), and an offline move of a stopped server. The guests' own view is the
judge: their heartbeat counter (one a second, on their disk, printed every 10) never goes
back and they never boot again while they move."""

from __future__ import annotations

from pathlib import Path

import pytest

from hosting.choices import ServerState
from hosting.models import AuditEvent, Host, Server
from testbed import layout

from .guests import (
    assert_kept_running,
    beats,
    console,
    create,
    domains,
    running,
    virsh,
    wait_console,
    wait_job,
    wait_text,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def use_pool(pool: str) -> None:
    """Where the testbed hosts put new servers' disks (both hosts alike)."""
    Host.objects.filter(name__startswith="tb-hv").update(storage_pool=pool)


def shared_console(server: Server) -> str:
    path = Path(layout.shared_pool_dir()) / f"{server.domain_name}.console.log"
    return path.read_text(errors="replace") if path.exists() else ""


def migrate(client, server: Server, **body) -> dict:
    resp = client.post(f"/api/v1/servers/{server.uuid}/migrate/", body, format="json")
    assert resp.status_code == 202, resp.content
    return wait_job(client, resp.json()["id"], timeout=300)


def test_migration(
    testbed, celery_worker, billing_client, owner_client, customer, tiny_plan, tiny_image, settings
):
    hv1, hv2 = Host.objects.get(name="tb-hv1"), Host.objects.get(name="tb-hv2")
    assert layout.SHARED_POOL in hv1.shared_pools and hv2.migration_address

    # given two guests booting at once: "shared" with its disks on the pool both hosts
    # see, "local" with its disks on its host's own pool
    use_pool(layout.SHARED_POOL)
    shared_uuid, _ = create(billing_client, customer, tiny_plan, tiny_image, "shared")
    use_pool(layout.HOST_POOL)
    local_uuid, _ = create(billing_client, customer, tiny_plan, tiny_image, "local")
    shared = Server.objects.select_related("host").get(uuid=shared_uuid)
    local = Server.objects.select_related("host").get(uuid=local_uuid)
    assert shared.host != local.host

    def shared_text() -> str:
        return shared_console(shared)

    def local_text() -> str:
        return console(billing_client, local_uuid)

    wait_text(shared_text, r"heartbeat=10\b")
    wait_console(billing_client, local_uuid, r"heartbeat=10\b")

    # a customer may not move servers, and learns nothing of hosts
    resp = owner_client.post(
        f"/api/v1/servers/{shared_uuid}/migrate/", {"target_host": "tb-hv1"}, format="json"
    )
    assert resp.status_code == 403, resp.content

    # refused at once: the server's own host
    resp = billing_client.post(
        f"/api/v1/servers/{shared_uuid}/migrate/",
        {"target_host": shared.host.name},
        format="json",
    )
    assert resp.status_code == 409, resp.content
    assert "own host" in resp.json()["error"]["message"]

    # refused by the hypervisor's pre-check: the target's guest network is down; the
    # guest keeps running where it was and nothing is left on the target
    source, target = shared.host, local.host
    virsh(target, "net-destroy", layout.GUEST_NETWORK)
    try:
        job = migrate(billing_client, shared, target_host=target.name)
    finally:
        virsh(target, "net-start", layout.GUEST_NETWORK)
    assert job["status"] == "failed", job
    assert f"network '{layout.GUEST_NETWORK}' is not active" in job["error"], job["error"]
    shared.refresh_from_db()
    assert (shared.host, shared.state) == (source, ServerState.RUNNING)
    assert shared.domain_name in running(source)
    assert shared.domain_name not in domains(target)

    # cancelled while it runs (a trickle of bandwidth keeps it going): it stays put
    resp = billing_client.post(
        f"/api/v1/servers/{shared_uuid}/migrate/",
        {"target_host": target.name, "bandwidth_mib_s": 1, "postcopy": False},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    wait_text(
        lambda: " ".join(billing_client.get(f"/api/v1/jobs/{job_id}/").json()["log"]),
        r"Pass \d+",
        timeout=60,
    )
    shared.refresh_from_db()
    assert shared.state == ServerState.MIGRATING
    # the customer sees "migrating", and no host
    seen = owner_client.get(f"/api/v1/servers/{shared_uuid}/").json()
    assert seen["state"] == "migrating" and "host" not in seen
    cancel = billing_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert cancel.status_code == 200, cancel.content
    job = wait_job(billing_client, job_id)
    assert job["status"] == "cancelled", job
    shared.refresh_from_db()
    assert (shared.host, shared.state) == (source, ServerState.RUNNING)
    assert shared.domain_name in running(source)
    assert shared.domain_name not in domains(target)

    # not converging (a trickle of bandwidth, no post-copy): the downtime target is raised
    # step by step, then the time limit aborts it cleanly; the guest runs on where it was
    settings.MIGRATION_ESCALATE_AFTER = settings.MIGRATION_ESCALATE_EVERY = 2.0
    before = shared_text()
    job = migrate(
        billing_client,
        shared,
        target_host=target.name,
        bandwidth_mib_s=1,
        postcopy=False,
        timeout_s=12,
    )
    assert job["status"] == "failed", job
    assert "did not finish within 12 s" in job["error"], job["error"]
    steps = " ".join(job["log"])
    for downtime in (100, 200, settings.MIGRATION_MAX_DOWNTIME_MS):
        assert f"downtime target raised to {downtime} ms" in steps, job["log"]
    shared.refresh_from_db()
    assert (shared.host, shared.state) == (source, ServerState.RUNNING)
    assert shared.domain_name in running(source)
    assert shared.domain_name not in domains(target)
    assert_kept_running(shared_text, before)

    # live over shared storage, while the heartbeat runs
    before = shared_text()
    job = migrate(billing_client, shared, target_host=target.name)
    assert job["status"] == "succeeded", (job["error"], job["log"][-5:])
    result = job["result"]
    assert result["live"] and result["storage"] == "shared"
    assert result["downtime_ms"] is not None and result["bytes_sent"] > 0, result
    assert result["total_seconds"] > 0
    shared.refresh_from_db()
    assert (shared.host, shared.state) == (target, ServerState.RUNNING)
    assert shared.domain_name in running(target)
    assert shared.domain_name not in domains(source)
    assert_kept_running(shared_text, before)
    assert AuditEvent.objects.filter(action="server.migrate", target_id=str(shared.pk)).count() >= 3
    assert AuditEvent.objects.filter(action="server.migrated", target_id=str(shared.pk)).exists()

    # live with its disks copied in the same migration (no target named: placement's)
    source = local.host
    target = hv1 if source == hv2 else hv2
    before = local_text()
    job = migrate(billing_client, local)
    assert job["status"] == "succeeded", (job["error"], job["log"][-5:])
    assert job["result"]["storage"] == "copied" and job["result"]["disk_bytes"] > 0, job
    local.refresh_from_db()
    assert (local.host, local.state) == (target, ServerState.RUNNING)
    assert local.domain_name in running(target)
    assert local.domain_name not in domains(source)
    assert local.domain_name not in virsh(source, "vol-list", layout.HOST_POOL)
    # the console follows (read from the new host, its history included)
    assert_kept_running(local_text, before)

    # offline: stopped, moved with its disk, and it boots on the target where it was
    resp = billing_client.post(f"/api/v1/servers/{local_uuid}/stop/")
    assert wait_job(billing_client, resp.json()["id"])["status"] == "succeeded"
    last = beats(local_text())[-1]
    source, target = local.host, source
    job = migrate(billing_client, local, target_host=target.name)
    assert job["status"] == "succeeded", (job["error"], job["log"][-5:])
    assert not job["result"]["live"] and job["result"]["storage"] == "copied"
    local.refresh_from_db()
    assert (local.host, local.state) == (target, ServerState.STOPPED)
    assert local.domain_name not in domains(source)
    resp = billing_client.post(f"/api/v1/servers/{local_uuid}/start/")
    assert wait_job(billing_client, resp.json()["id"])["status"] == "succeeded"
    assert local.domain_name in running(target)
    text = wait_console(
        billing_client, local_uuid, r"boot=2 .*\n(?:.*\n)*?paddock-guest heartbeat="
    )
    after = beats(text.rsplit(" ready", 1)[-1])
    assert after and after[0] >= last, (last, after)

    # clean up (each server's disks are where its host's pool setting says)
    for server, pool in ((shared, layout.SHARED_POOL), (local, layout.HOST_POOL)):
        use_pool(pool)
        resp = billing_client.delete(f"/api/v1/servers/{server.uuid}/")
        assert wait_job(billing_client, resp.json()["id"])["status"] == "succeeded"
    use_pool(layout.HOST_POOL)
