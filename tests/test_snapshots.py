"""Snapshots end to end on libvirt's test driver: API -> Job -> real worker -> libvirt.

The test driver keeps its own internal snapshots (no disk files); the external qcow2
snapshots of QEMU hosts are covered by the system suite (tests/system/test_backups.py).
"""

from __future__ import annotations

import libvirt
import pytest

from hosting.choices import JobStatus, ServerState, SnapshotStatus
from hosting.models import AuditEvent, Snapshot

from .test_provisioning import domain_state, wait_job
from .test_provisioning import provisioned as _provisioned

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

provisioned = _provisioned  # a server provisioned through the API on the test driver


def snap_url(server, *rest: str) -> str:
    return "/".join([f"/api/v1/servers/{server.uuid}/snapshots", *rest]) + "/"


def take(client, server, name: str, **extra) -> dict:
    resp = client.post(snap_url(server), {"name": name, **extra}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log)
    return resp.json()


def libvirt_snapshots(server) -> list[str]:
    conn = libvirt.open(server.host.libvirt_uri)
    try:
        return [s.getName() for s in conn.lookupByName(server.domain_name).listAllSnapshots(0)]
    finally:
        conn.close()


@pytest.fixture
def roomy(provisioned):
    provisioned.plan.snapshot_slots = 3
    provisioned.plan.save()
    return provisioned


def test_owner_takes_lists_reverts_and_deletes_snapshots(roomy, owner_client):
    server = roomy
    # given two snapshots taken by the owner through the API
    first = take(owner_client, server, "before upgrade", description="clean state")
    take(owner_client, server, "after upgrade")
    listed = owner_client.get(snap_url(server)).json()
    assert [s["name"] for s in listed] == ["before upgrade", "after upgrade"]
    assert listed[0]["description"] == "clean state"
    assert {s["status"] for s in listed} == {SnapshotStatus.READY}
    assert len(libvirt_snapshots(server)) == 2
    # each request wrote an audit event with the customer's name on it
    assert AuditEvent.objects.filter(action="snapshot.create").count() == 2

    # when the owner reverts to the first: the later one is gone, the server is off
    resp = owner_client.post(snap_url(server, first["snapshot"], "revert"))
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log)
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED
    assert domain_state(server) == libvirt.VIR_DOMAIN_SHUTOFF
    assert list(server.snapshots.values_list("name", flat=True)) == ["before upgrade"]
    assert len(libvirt_snapshots(server)) == 1

    # and deletes it: gone from the API and from the hypervisor
    resp = owner_client.delete(snap_url(server, first["snapshot"]))
    assert resp.status_code == 202, resp.content
    assert wait_job(resp.json()["id"]).status == JobStatus.SUCCEEDED
    assert owner_client.get(snap_url(server)).json() == []
    assert libvirt_snapshots(server) == []


def test_snapshot_with_memory_reverts_to_a_running_server(roomy, owner_client):
    server = roomy
    made = take(owner_client, server, "live", with_memory=True)
    owner_client.post(f"/api/v1/servers/{server.uuid}/force-stop/")
    wait_job(server.jobs.order_by("-id").first().pk)
    resp = owner_client.post(snap_url(server, made["snapshot"], "revert"))
    assert wait_job(resp.json()["id"]).status == JobStatus.SUCCEEDED
    server.refresh_from_db()
    assert server.state == ServerState.RUNNING
    assert domain_state(server) == libvirt.VIR_DOMAIN_RUNNING


def test_plan_slots_limit_snapshots(provisioned, owner_client):
    server = provisioned  # the plan has one slot
    take(owner_client, server, "one")
    resp = owner_client.post(snap_url(server), {"name": "two"}, format="json")
    assert resp.status_code == 409, resp.content
    assert "slot" in resp.json()["error"]["message"]
    assert server.snapshots.count() == 1


def test_memory_snapshot_needs_a_running_server(provisioned, owner_client):
    server = provisioned
    owner_client.post(f"/api/v1/servers/{server.uuid}/force-stop/")
    wait_job(server.jobs.order_by("-id").first().pk)
    resp = owner_client.post(snap_url(server), {"name": "x", "with_memory": True}, format="json")
    assert resp.status_code == 400, resp.content
    assert not Snapshot.objects.exists()


def test_another_customers_snapshot_is_404(roomy, owner_client, other_client):
    server = roomy
    made = take(owner_client, server, "mine")
    assert other_client.get(snap_url(server)).status_code == 404
    assert other_client.get(snap_url(server, made["snapshot"])).status_code == 404
    assert other_client.post(snap_url(server, made["snapshot"], "revert")).status_code == 404
    assert other_client.delete(snap_url(server, made["snapshot"])).status_code == 404
    assert owner_client.get(snap_url(server, "not-a-uuid")).status_code == 404
    assert Snapshot.objects.get().status == SnapshotStatus.READY
