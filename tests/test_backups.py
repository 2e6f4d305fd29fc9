"""Backups as rows and requests (fast, no hypervisor): slots, chains, tenancy, the grace
period after termination, the API's customer view, the panel's sections. The real
backups of real guests are in tests/system/test_backups.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hosting.access import Caller
from hosting.backups.store import LocalStore
from hosting.choices import BackupKind, BackupStatus, JobKind, ServerState
from hosting.models import AuditEvent, Backup, Job
from hosting.services import backups as backup_service
from hosting.services.errors import Conflict

pytestmark = pytest.mark.django_db


def complete(server, *, parent=None, checkpoint="ck", size=1000, **extra) -> Backup:
    return Backup.objects.create(
        server=server,
        customer=server.customer,
        kind=BackupKind.INCREMENTAL if parent else BackupKind.FULL,
        parent=parent,
        status=BackupStatus.COMPLETE,
        checkpoint=checkpoint,
        stored_bytes=size,
        manifest={
            "disks": [
                {
                    "name": "vda",
                    "object": {"key": f"{server.customer_id}/{server.uuid}/x.qcow2", "size": 5},
                }
            ]
        },
        completed_at=timezone.now(),
        **extra,
    )


@pytest.fixture
def qemu_server(server):
    """A server on a host whose backend can back up (a QEMU URI; nothing connects)."""
    host = server.host
    host.libvirt_uri = "qemu+tcp://192.0.2.10/system"
    host.save()
    server.plan.backup_slots = 3
    server.plan.save()
    return server


def test_backup_request_is_incremental_on_the_last_checkpoint(qemu_server, owner):
    server = qemu_server
    caller = Caller(user=owner)
    first = complete(server)
    backup, job = backup_service.request_backup(server=server, caller=caller)
    assert backup.kind == BackupKind.INCREMENTAL and backup.parent == first
    assert job.kind == JobKind.BACKUP and job.params == {"backup": backup.pk}
    assert AuditEvent.objects.filter(action="backup.create", customer=server.customer).exists()


def test_full_when_asked_or_when_the_chain_restarted(qemu_server, owner):
    server = qemu_server
    complete(server, checkpoint="")  # a revert or a restore cleared it
    backup, _ = backup_service.request_backup(server=server, caller=Caller(user=owner))
    assert backup.kind == BackupKind.FULL and backup.parent is None
    # a complete one with a checkpoint, but a full backup asked for
    Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.COMPLETE, checkpoint="c2")
    Job.objects.all().delete()
    again, _ = backup_service.request_backup(server=server, caller=Caller(user=owner), full=True)
    assert again.kind == BackupKind.FULL and again.parent is None


def test_plan_slots_limit_backups(qemu_server, owner):
    server = qemu_server
    for _ in range(3):
        complete(server)
    with pytest.raises(Conflict, match="slot"):
        backup_service.request_backup(server=server, caller=Caller(user=owner))


def test_test_driver_host_cannot_back_up(server, owner_client):
    # the test driver has no backup API: the capability says so, the API refuses (409)
    resp = owner_client.post(f"/api/v1/servers/{server.uuid}/backups/", {}, format="json")
    assert resp.status_code == 409, resp.content
    assert "hypervisor" in resp.json()["error"]["message"]
    assert not Backup.objects.exists() and not Job.objects.exists()


def test_customer_view_hides_store_keys_and_other_customers(
    qemu_server, owner_client, other_client, billing_client
):
    backup = complete(qemu_server)
    mine = owner_client.get(f"/api/v1/backups/{backup.uuid}/").json()
    assert "key" not in str(mine["manifest"]) and "checkpoint" not in mine
    assert mine["manifest"]["disks"][0]["size"] == 5
    assert billing_client.get(f"/api/v1/backups/{backup.uuid}/").json()["checkpoint"] == "ck"
    assert other_client.get(f"/api/v1/backups/{backup.uuid}/").status_code == 404
    assert other_client.get("/api/v1/backups/").json()["count"] == 0
    assert other_client.post(f"/api/v1/backups/{backup.uuid}/verify/").status_code == 404
    assert other_client.delete(f"/api/v1/backups/{backup.uuid}/").status_code == 404
    assert other_client.get(f"/api/v1/servers/{qemu_server.uuid}/backups/").status_code == 404


def test_deleting_a_backup_takes_its_incrementals(
    qemu_server, owner_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.BACKUP_STORE = str(tmp_path)
    full = complete(qemu_server)
    inc = complete(qemu_server, parent=full)
    with LocalStore(tmp_path).put(backup_service.object_key(inc)) as writer:
        writer.write(b"x")
        writer.close()
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.delete(f"/api/v1/backups/{full.uuid}/").status_code == 204
    assert not Backup.objects.exists()
    assert LocalStore(tmp_path).list() == []


def test_backups_outlive_termination_for_the_grace_period(
    qemu_server, owner_client, settings, tmp_path
):
    settings.BACKUP_STORE = str(tmp_path)
    server = qemu_server
    backup = complete(server)
    server.state = ServerState.TERMINATED
    server.terminated_at = timezone.now()
    server.save()
    backup_service.keep_after_termination(server)
    backup.refresh_from_db()
    left = backup.expires_at - timezone.now()
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)
    # the customer sees it under the deleted servers, in the API and in the panel
    listed = owner_client.get("/api/v1/backups/?deleted=true").json()["results"]
    assert [b["uuid"] for b in listed] == [str(backup.uuid)]
    assert listed[0]["server_terminated"] is True
    # still there before expiry, gone after
    assert backup_service.purge_expired() == 0
    Backup.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert backup_service.purge_expired() == 1
    assert not Backup.objects.exists()


def test_restore_into_a_new_server_queues_provisioning_with_the_backup(qemu_server, owner, pool):
    backup = complete(qemu_server)
    server, job = backup_service.restore_into_new_server(
        backup=backup, hostname="phoenix", caller=Caller(user=owner)
    )
    assert job.kind == JobKind.PROVISION and job.params == {"restore_backup": backup.pk}
    assert server.plan == qemu_server.plan and server.image == qemu_server.image
    assert server.customer == qemu_server.customer


def test_restore_onto_the_server_needs_it_stopped(qemu_server, owner_client):
    backup = complete(qemu_server)
    resp = owner_client.post(f"/api/v1/backups/{backup.uuid}/restore/")
    assert resp.status_code == 409, resp.content
    qemu_server.state = ServerState.STOPPED
    qemu_server.save()
    resp = owner_client.post(f"/api/v1/backups/{backup.uuid}/restore/")
    assert resp.status_code == 202, resp.content
    assert Job.objects.get().kind == JobKind.BACKUP_RESTORE


def test_storage_used_per_customer(qemu_server):
    full = complete(qemu_server, size=1000)
    complete(qemu_server, parent=full, size=50)
    assert backup_service.storage_used(qemu_server.customer) == 1050


# --- the panel ----------------------------------------------------------------------------
@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def test_server_page_shows_snapshots_and_backups(browser, qemu_server):
    complete(qemu_server)
    page = browser.get(reverse("dashboard:server-detail", kwargs={"uuid": qemu_server.uuid}))
    body = page.content.decode()
    assert 'data-role="snapshots"' in body and 'data-role="backups"' in body
    assert "1 of 3 slots" in body
    assert 'data-action="backup-restore"' in body


def test_panel_takes_a_snapshot(browser, server):
    url = reverse("dashboard:server-snapshot-create", kwargs={"uuid": server.uuid})
    resp = browser.post(url, {"name": "before", "description": "d"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    assert "before" in resp.content.decode()
    assert Job.objects.get().kind == JobKind.SNAPSHOT_CREATE


def test_panel_lists_deleted_servers_backups(browser, qemu_server, other_owner):
    complete(qemu_server)
    qemu_server.state = ServerState.TERMINATED
    qemu_server.terminated_at = timezone.now()
    qemu_server.save()
    page = browser.get(reverse("dashboard:deleted-servers")).content.decode()
    assert qemu_server.hostname in page and 'data-action="backup-restore-new"' in page
    browser.force_login(other_owner)
    page = browser.get(reverse("dashboard:deleted-servers")).content.decode()
    assert qemu_server.hostname not in page


def test_verification_samples_the_least_recently_verified(qemu_server):
    old = complete(qemu_server)
    never = complete(qemu_server)
    Backup.objects.filter(pk=old.pk).update(verified_at=timezone.now() - timedelta(days=40))
    complete(qemu_server, verified_at=timezone.now())  # checked today: not again
    assert backup_service.verify_sample(count=1) == 1
    job = Job.objects.get()
    assert job.kind == JobKind.BACKUP_VERIFY and job.params == {"backup": never.pk}
    # the server is busy with that job: nothing more this time
    assert backup_service.verify_sample(count=5) == 0


def claim(server) -> Backup:
    """A backup of `server` claims its slot as the backup job's first step does (again,
    for the server's backup that waits)."""
    from hosting.runners import JobContext
    from hosting.services.backups import _claim_slot

    record = Backup.objects.filter(server=server).first() or Backup.objects.create(
        server=server, customer=server.customer
    )
    job = Job.objects.filter(server=server).first() or Job.objects.create(
        kind=JobKind.BACKUP, server=server, params={"backup": record.pk}
    )
    _claim_slot(JobContext(job=job, server=server, host=server.host, enforce_lease=False), record)
    record.refresh_from_db()
    return record


def test_backups_wait_for_a_slot_on_their_host_and_in_the_store(settings, qemu_server):
    from hosting.backends.errors import HostBusy

    from .factories import HostFactory, ServerFactory

    # given one backup at a time per host, two in the store, and a server on another host
    settings.BACKUPS_PER_HOST, settings.BACKUPS_PER_STORE = 1, 2
    elsewhere = ServerFactory(customer=qemu_server.customer, host=HostFactory(name="hv-b"))
    third = ServerFactory(customer=qemu_server.customer, host=HostFactory(name="hv-c"))
    assert claim(qemu_server).status == BackupStatus.RUNNING

    # then a second backup on the same host waits (a transient error: retried later)
    with pytest.raises(HostBusy, match="on this host"):
        claim(ServerFactory(customer=qemu_server.customer, host=qemu_server.host))
    # one on another host runs, and a third host's waits for the store
    assert claim(elsewhere).status == BackupStatus.RUNNING
    with pytest.raises(HostBusy, match="backup store"):
        claim(third)

    assert Backup.objects.get(server=third).status == BackupStatus.PENDING

    # and when the store's limit is lifted, it runs
    settings.BACKUPS_PER_STORE = 0
    assert claim(third).status == BackupStatus.RUNNING
