"""Asking for a migration: who may, the checks made before any hypervisor is asked (each
refusal with its reason), the target chosen when none is named, and cancelling. The
moves themselves run on real hosts (tests/system/test_migration.py): libvirt's test
driver cannot migrate."""

from __future__ import annotations

import pytest

from hosting.choices import HostState, JobKind, JobStatus, ServerState
from hosting.models import AuditEvent, Job
from hosting.states import can_transition

from .factories import HostFactory, ServerFactory

pytestmark = pytest.mark.django_db


def qemu_host(n: int, **fields):
    """A QEMU host as the database knows it (nothing here connects to it)."""
    defaults = dict(
        name=f"kvm-{n}",
        libvirt_uri=f"qemu+tcp://192.0.2.{n}/system",
        networks=["default"],
        storage_pools=["default-pool"],
    )
    return HostFactory(**{**defaults, **fields})


@pytest.fixture
def hosts(db):
    return qemu_host(1), qemu_host(2)


@pytest.fixture
def movable(customer, plan, image, hosts):
    return ServerFactory(customer=customer, plan=plan, image=image, host=hosts[0])


def post(client, server, **body):
    return client.post(f"/api/v1/servers/{server.uuid}/migrate/", body, format="json")


def test_a_customer_may_not_migrate_and_learns_nothing_of_hosts(owner_client, movable):
    resp = post(owner_client, movable, target_host="no-such-host")
    assert resp.status_code == 403
    assert "host" not in resp.json()["error"].get("fields", {})
    assert not Job.objects.filter(kind=JobKind.MIGRATE).exists()


def test_another_customers_server_is_a_404(other_client, movable):
    assert post(other_client, movable).status_code == 404


def test_the_provider_migrates_to_the_named_host(billing_client, movable, hosts):
    resp = post(billing_client, movable, target_host=hosts[1].name)
    assert resp.status_code == 202, resp.content
    job = Job.objects.get(pk=resp.json()["id"])
    assert (job.kind, job.host, job.target_host) == (JobKind.MIGRATE, hosts[0], hosts[1])
    # the target's room is held for the move
    movable.refresh_from_db()
    hosts[1].refresh_from_db()
    assert movable.reserved_host == hosts[1] and hosts[1].alloc_memory_mib == 256
    assert job.params == {"live": True, "from_state": ServerState.RUNNING}
    assert resp.json()["target_host"] == hosts[1].name
    event = AuditEvent.objects.get(action="server.migrate")
    assert event.details["target"] == hosts[1].name and event.details["live"] is True


def test_without_a_target_placement_chooses_another_host(billing_client, movable, hosts):
    qemu_host(3, state=HostState.OFFLINE)
    resp = post(billing_client, movable)
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).target_host == hosts[1]


def test_a_stopped_server_moves_offline(billing_client, movable, hosts):
    movable.state = ServerState.STOPPED
    movable.save()
    resp = post(billing_client, movable, target_host=hosts[1].name)
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).params["live"] is False
    # and cannot be asked to move live
    Job.objects.update(status=JobStatus.SUCCEEDED)
    resp = post(billing_client, movable, target_host=hosts[1].name, live=True)
    assert resp.status_code == 409
    assert "cannot move live" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": HostState.OFFLINE}, "host offline"),
        ({"maintenance": True}, "maintenance"),
        ({"networks": ["other"]}, "network default missing"),
        ({"storage_pools": ["other"]}, "storage pool default-pool missing"),
        ({"memory_mib": 128}, "not enough memory"),
        ({"libvirt_uri": "test:///default?host=t"}, "cannot do live migration"),
    ],
)
def test_refused_with_its_reason(billing_client, movable, hosts, change, reason):
    target = hosts[1]
    for key, value in change.items():
        setattr(target, key, value)
    target.save()
    resp = post(billing_client, movable, target_host=target.name)
    assert resp.status_code == 409, resp.content
    assert reason in resp.json()["error"]["message"]
    assert not Job.objects.filter(kind=JobKind.MIGRATE).exists()


def test_refused_to_its_own_host(billing_client, movable, hosts):
    resp = post(billing_client, movable, target_host=hosts[0].name)
    assert resp.status_code == 409
    assert "own host" in resp.json()["error"]["message"]


def test_no_host_can_take_it(billing_client, movable, hosts):
    hosts[1].memory_mib = 128
    hosts[1].save()
    resp = post(billing_client, movable)
    assert resp.status_code in (400, 409), resp.content
    assert "No online virtual machine host has room" in resp.json()["error"]["message"]


def test_cancel_a_queued_migration(billing_client, owner_client, movable, hosts):
    job_id = post(billing_client, movable, target_host=hosts[1].name).json()["id"]
    assert owner_client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 403
    resp = billing_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == JobStatus.CANCELLED
    movable.refresh_from_db()
    hosts[1].refresh_from_db()
    assert movable.reserved_host is None and hosts[1].alloc_memory_mib == 0
    # asking again is harmless; a finished job cannot be cancelled
    assert billing_client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED)
    assert billing_client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 409


def test_a_running_migration_is_asked_to_stop(billing_client, movable, hosts):
    job_id = post(billing_client, movable, target_host=hosts[1].name).json()["id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.RUNNING)
    assert billing_client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    assert Job.objects.get(pk=job_id).cancel_requested


def test_the_customer_sees_migrating_and_no_host(owner_client, movable):
    movable.state = ServerState.MIGRATING
    movable.save()
    body = owner_client.get(f"/api/v1/servers/{movable.uuid}/").json()
    assert body["state"] == "migrating" and "host" not in body


def test_migrating_returns_to_any_settled_state():
    for state in (ServerState.RUNNING, ServerState.STOPPED, ServerState.PAUSED):
        assert can_transition(state, ServerState.MIGRATING)
        assert can_transition(ServerState.MIGRATING, state)
    assert not can_transition(ServerState.MIGRATING, ServerState.TERMINATING)


def test_the_customer_reads_a_migration_job_without_hosts(
    billing_client, owner_client, movable, hosts
):
    job_id = post(billing_client, movable, target_host=hosts[1].name).json()["id"]
    Job.objects.filter(pk=job_id).update(message=f"Moved live to {hosts[1].name} in 1.2 s")
    body = owner_client.get(f"/api/v1/jobs/{job_id}/").json()
    assert hosts[1].name not in str(body) and hosts[0].name not in str(body)
    assert "target_host" not in body and "result" not in body
