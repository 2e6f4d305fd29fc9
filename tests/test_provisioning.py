"""Provisioning and power control end to end: API -> Job -> real Celery worker -> libvirt."""

from __future__ import annotations

import time

import libvirt
import pytest

from hosting.choices import JobStatus, ServerState
from hosting.models import IPAddress, Job, Server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_job(job_id: int, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout}s: {job.log}")


def domain_state(server: Server) -> int | None:
    conn = libvirt.open(server.host.libvirt_uri)
    try:
        return conn.lookupByName(server.domain_name).state()[0]
    except libvirt.libvirtError:
        return None


@pytest.fixture
def provisioned(celery_worker, billing_client, customer, plan, image, host, pool):
    resp = billing_client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": "web-1"},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log)
    return Server.objects.get(pk=job.server_id)


def test_provision_creates_a_running_domain_with_an_address(provisioned, pool):
    # given a server created through the API, when its job has run
    server = provisioned
    # then the domain exists and runs, and the address is assigned
    assert server.state == ServerState.RUNNING
    assert domain_state(server) == libvirt.VIR_DOMAIN_RUNNING
    assert list(server.addresses.values_list("address", flat=True)) == ["192.0.2.2"]
    job = server.jobs.get()
    assert job.progress == 100
    assert any("Booting" in line for line in job.log)


@pytest.mark.parametrize(
    ("action", "expected_state", "libvirt_state"),
    [
        ("stop", ServerState.STOPPED, libvirt.VIR_DOMAIN_SHUTOFF),
        ("force-stop", ServerState.STOPPED, libvirt.VIR_DOMAIN_SHUTOFF),
        ("reboot", ServerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING),
        ("suspend", ServerState.STOPPED, libvirt.VIR_DOMAIN_SHUTOFF),
        ("pause", ServerState.PAUSED, libvirt.VIR_DOMAIN_PAUSED),
    ],
)
def test_power_actions(provisioned, billing_client, action, expected_state, libvirt_state):
    server = provisioned
    resp = billing_client.post(f"/api/v1/servers/{server.uuid}/{action}/")
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    server.refresh_from_db()
    assert server.state == expected_state
    assert domain_state(server) == libvirt_state


def test_start_after_stop_and_unsuspend(provisioned, billing_client):
    server = provisioned
    for action, state, suspended in [
        ("stop", ServerState.STOPPED, False),
        ("start", ServerState.RUNNING, False),
        ("suspend", ServerState.STOPPED, True),
        ("unsuspend", ServerState.RUNNING, False),
        ("pause", ServerState.PAUSED, False),
        ("resume", ServerState.RUNNING, False),
    ]:
        resp = billing_client.post(f"/api/v1/servers/{server.uuid}/{action}/")
        assert resp.status_code == 202, (action, resp.content)
        assert wait_job(resp.json()["id"]).status == JobStatus.SUCCEEDED
        server.refresh_from_db()
        assert (server.state, server.suspended) == (state, suspended), action
    assert domain_state(server) == libvirt.VIR_DOMAIN_RUNNING


def test_illegal_action_is_409(provisioned, billing_client):
    resp = billing_client.post(f"/api/v1/servers/{provisioned.uuid}/start/")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "conflict"
    assert "running" in resp.json()["error"]["message"]


def test_terminate_removes_domain_and_frees_address(provisioned, billing_client):
    server = provisioned
    resp = billing_client.delete(f"/api/v1/servers/{server.uuid}/")
    assert resp.status_code == 202
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    server.refresh_from_db()
    assert server.state == ServerState.TERMINATED
    assert domain_state(server) is None
    assert not IPAddress.objects.filter(address="192.0.2.2").exists()
    conn = libvirt.open(server.host.libvirt_uri)
    pool_vols = conn.storagePoolLookupByName("default-pool").listVolumes()
    assert f"{server.domain_name}-disk0.qcow2" not in pool_vols


def test_billing_flow_end_to_end(
    celery_worker, billing_client, other_client, plan, image, host, pool
):
    # given a billing system that creates a customer with a panel login
    resp = billing_client.post(
        "/api/v1/customers/",
        {
            "name": "Hooli",
            "email": "it@hooli.example",
            "external_ref": "INV-7",
            "owner": {"username": "gavin", "password": "middle-out-2026"},
        },
        format="json",
    )
    assert resp.status_code == 201
    customer_id = resp.json()["id"]
    # when it orders a server for that customer
    resp = billing_client.post(
        "/api/v1/servers/",
        {"customer": customer_id, "plan": plan.pk, "image": image.pk, "hostname": "hooli-1"},
        format="json",
    )
    assert resp.status_code == 202
    job_id = resp.json()["id"]
    # then the job reaches succeeded, as the API reports it
    deadline = time.monotonic() + 30
    while (body := billing_client.get(f"/api/v1/jobs/{job_id}/").json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["status"] == "succeeded" and body["progress"] == 100
    server = billing_client.get(f"/api/v1/servers/{body['server']}/").json()
    assert server["state"] == "running"
    assert server["customer"] == customer_id
    assert server["addresses"] == [{"address": "192.0.2.2", "family": 4}]
    # and another customer's token cannot see it
    assert other_client.get(f"/api/v1/servers/{body['server']}/").status_code == 404
    assert other_client.get(f"/api/v1/jobs/{job_id}/").status_code == 404


def test_console_tail_is_fetched_by_a_worker(provisioned, owner_client, other_client):
    # given the owner's server; when the owner polls the console endpoint
    url = f"/api/v1/servers/{provisioned.uuid}/console/"
    first = owner_client.get(url)
    assert first.status_code == 200
    assert first.json()["fetched_at"] is None  # nothing read yet: a worker was asked
    deadline = time.monotonic() + 10
    while (body := owner_client.get(url).json())["fetched_at"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # then a worker read the host (the test driver's guests print nothing)
    assert body["text"] == "" and body["error"] == ""
    assert other_client.get(url).status_code == 404
