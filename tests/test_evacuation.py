"""Evacuating a host for maintenance: one parent job asks for a migration of every server
(placement chooses each target), a few at a time, records each server moved or why not,
and carries on past failures. libvirt's test driver cannot migrate, so the moves here
are asked of hosts the database knows as QEMU hosts: the real job runner runs the parent
(and, in the worker test, the migrations, which fail against a host that refuses the
connection); the test stands in for a hypervisor that completed a move where one must
succeed. Real moves: tests/system/test_balancing.py."""

from __future__ import annotations

import pytest
from django.db import transaction

from hosting.access import Caller
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.models import AuditEvent, Job, Server
from hosting.runners import run_job
from hosting.services import jobs as job_service
from hosting.services import placement
from hosting.services.evacuation import request_evacuation
from hosting.services.servers import lock_server, set_state

from .factories import HostFactory, ServerFactory
from .test_provisioning import wait_job


def qemu_host(n: int, **fields):
    defaults = dict(
        name=f"kvm-{n}",
        libvirt_uri=f"qemu+tcp://192.0.2.{n}/system",
        networks=["default"],
        storage_pools=["default-pool"],
    )
    return HostFactory(**{**defaults, **fields})


def servers_on(host, customer, plan, image, n, **fields):
    # the factory counts each on its host, as placement would
    return [
        ServerFactory(customer=customer, plan=plan, image=image, host=host, **fields)
        for _ in range(n)
    ]


def moved_by_hypervisor(job: Job) -> None:
    """What the migrate runner records once the hypervisor moved the guest (the test
    driver cannot): the server on its target, the job succeeded."""
    server = Server.objects.get(pk=job.server_id)
    with transaction.atomic():
        placement.complete_move(server)
        set_state(lock_server(server.pk), job.params["from_state"])
    job_service.finish(job, status=JobStatus.SUCCEEDED, message="moved")


def test_evacuation_moves_every_server_a_few_at_a_time(
    transactional_db, customer, plan, image, settings
):
    settings.EVACUATE_PARALLEL = 2
    settings.EVACUATE_POLL = 0
    source, a, b = qemu_host(1), qemu_host(2), qemu_host(3)
    running = servers_on(source, customer, plan, image, 3)
    stopped = servers_on(source, customer, plan, image, 1, state=ServerState.STOPPED)
    parent = request_evacuation(host=source, caller=Caller.system())
    source.refresh_from_db()
    assert source.maintenance and parent.kind == JobKind.EVACUATE

    assert run_job(parent.pk) == "again"
    children = list(Job.objects.filter(kind=JobKind.MIGRATE).order_by("pk"))
    assert len(children) == 2  # no more than EVACUATE_PARALLEL at once
    assert {c.target_host_id for c in children} <= {a.pk, b.pk}
    assert all(c.params["live"] for c in children)  # running servers move live
    parent.refresh_from_db()
    assert parent.status == JobStatus.QUEUED and parent.progress == 0

    while True:
        for child in Job.objects.filter(kind=JobKind.MIGRATE, status=JobStatus.QUEUED):
            moved_by_hypervisor(child)
        outcome = run_job(parent.pk)
        if outcome != "again":
            break
        parent.refresh_from_db()
        assert Job.objects.filter(kind=JobKind.MIGRATE, status=JobStatus.QUEUED).count() <= 2
    parent.refresh_from_db()
    assert outcome == "succeeded", parent.error
    assert parent.progress == 100 and len(parent.result["moved"]) == 4
    assert not Server.objects.filter(host=source).exists()
    offline = Job.objects.get(kind=JobKind.MIGRATE, server=stopped[0])
    assert offline.params["live"] is False  # the stopped one moved offline
    # spread over both targets by placement, every counter consistent
    assert {s.host_id for s in Server.objects.filter(pk__in=[s.pk for s in running])} == {
        a.pk,
        b.pk,
    }
    assert placement.recount() == []
    assert AuditEvent.objects.filter(action="host.evacuate", target_id=str(source.pk)).exists()
    assert AuditEvent.objects.get(action="host.evacuated").details["moved"] == 4


def test_a_server_that_cannot_move_is_reported_and_the_rest_go_on(
    celery_worker, customer, plan, image, settings
):
    """Through a real worker: the migrations fail (the source refuses connections), a
    pinned server is refused by placement; each is reported with its reason."""
    settings.EVACUATE_PARALLEL = 2
    settings.EVACUATE_POLL = 0.2
    source = qemu_host(1, libvirt_uri="qemu+tcp://127.0.0.1:1/system")
    qemu_host(2)
    servers = servers_on(source, customer, plan, image, 3)
    Server.objects.filter(pk=servers[0].pk).update(pinned_host=source)
    parent = wait_job(request_evacuation(host=source, caller=Caller.system()).pk, timeout=60)
    assert parent.status == JobStatus.FAILED
    failed = parent.result["failed"]
    assert set(failed) == {str(s.pk) for s in servers}
    assert "pinned" in failed[str(servers[0].pk)]["error"]
    for s in servers[1:]:
        assert failed[str(s.pk)]["error"].startswith("migration failed")
    assert Job.objects.filter(kind=JobKind.MIGRATE, status=JobStatus.FAILED).count() == 2
    # nothing moved, nothing held on the target
    assert Server.objects.filter(host=source).count() == 3
    assert not Server.objects.filter(reserved_host__isnull=False).exists()
    assert placement.recount() == []


def test_the_api_evacuates_for_staff_with_the_permission(
    client, staff, customer, plan, image, billing_client
):
    source = qemu_host(1)
    qemu_host(2)
    servers_on(source, customer, plan, image, 1)
    url = f"/api/v1/hosts/{source.pk}/evacuate/"
    assert billing_client.post(url).status_code == 403  # hosts are staff's business
    client.force_login(staff)
    resp = client.post(url)
    assert resp.status_code == 202, resp.content
    job = Job.objects.get(pk=resp.json()["id"])
    assert job.kind == JobKind.EVACUATE and job.host == source
    source.refresh_from_db()
    assert source.maintenance
    assert client.post(url).status_code == 409  # one evacuation at a time


@pytest.mark.django_db
def test_staff_without_the_permission_may_not_evacuate(client):
    from .factories import UserFactory

    user = UserFactory(username="ops", is_staff=True)
    client.force_login(user)
    host = qemu_host(1)
    assert client.post(f"/api/v1/hosts/{host.pk}/evacuate/").status_code == 403
    host.refresh_from_db()
    assert not host.maintenance
