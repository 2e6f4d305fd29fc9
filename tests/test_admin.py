"""The Django admin: every model's pages open, and the actions go through the services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from hosting.choices import JobKind, JobStatus, TokenScope
from hosting.models import APIToken, AuditEvent, Job
from hosting.services.tokens import issue_token

from .factories import HostFactory, SSHKeyFactory

pytestmark = pytest.mark.django_db

HOSTING_MODELS = [m for m in admin.site._registry if m._meta.app_label == "hosting"]


@pytest.fixture
def admin_client_(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_every_hosting_model_is_registered():
    from django.apps import apps

    names = {m.__name__ for m in apps.get_app_config("hosting").get_models()}
    assert names == {m.__name__ for m in HOSTING_MODELS}


@pytest.mark.parametrize("model", HOSTING_MODELS, ids=lambda m: m.__name__)
def test_changelist_and_search_open(admin_client_, model, server, owner, staff):
    # given one row of every kind (servers, jobs, tokens, audit events, addresses ...)
    SSHKeyFactory(customer=server.customer)
    issue_token(user=staff, scope=TokenScope.BILLING)
    Job.objects.create(kind=JobKind.START, server=server, log=["10:00:00 <b>Booting</b>"])
    AuditEvent.objects.create(action="server.start", target_type="server", target_id="1")
    url = reverse(f"admin:hosting_{model._meta.model_name}_changelist")
    # when the changelist is opened, plain and searched, then every row's page
    assert admin_client_.get(url).status_code == 200
    assert admin_client_.get(url, {"q": "x"}).status_code == 200
    for obj in model.objects.all()[:3]:
        change = reverse(f"admin:hosting_{model._meta.model_name}_change", args=[obj.pk])
        assert admin_client_.get(change).status_code == 200


def test_host_refresh_action_queues_a_job(admin_client_, host, django_capture_on_commit_callbacks):
    url = reverse("admin:hosting_host_changelist")
    with django_capture_on_commit_callbacks(execute=False):
        resp = admin_client_.post(
            url, {"action": "refresh_from_hypervisor", "_selected_action": [host.pk]}, follow=True
        )
    assert resp.status_code == 200
    job = Job.objects.get(host=host)
    assert job.kind == JobKind.HOST_REFRESH and job.status == JobStatus.QUEUED
    assert AuditEvent.objects.filter(action="host.refresh", target_id=str(host.pk)).exists()


def test_server_actions_queue_jobs_and_refuse_illegal_ones(admin_client_, server):
    url = reverse("admin:hosting_server_changelist")
    resp = admin_client_.post(
        url, {"action": "action_start", "_selected_action": [server.pk]}, follow=True
    )
    assert "Cannot start a server that is running" in resp.content.decode()
    assert not Job.objects.exists()
    resp = admin_client_.post(
        url, {"action": "action_stop", "_selected_action": [server.pk]}, follow=True
    )
    assert Job.objects.get(server=server).kind == JobKind.STOP


def test_servers_jobs_and_audit_are_read_only(admin_client_, server):
    for name in ("server", "job", "auditevent", "ipaddress"):
        assert admin_client_.get(reverse(f"admin:hosting_{name}_add")).status_code == 403
    assert (
        admin_client_.get(reverse("admin:hosting_server_delete", args=[server.pk])).status_code
        == 403
    )


def test_job_log_is_shown_escaped(admin_client_, server):
    job = Job.objects.create(kind=JobKind.START, server=server, log=["<script>x</script>"])
    page = admin_client_.get(reverse("admin:hosting_job_change", args=[job.pk])).content.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>x</script>" not in page


def test_token_add_shows_the_key_once_and_never_the_digest(admin_client_, staff):
    resp = admin_client_.post(
        reverse("admin:hosting_apitoken_add"),
        {"user": staff.pk, "scope": TokenScope.BILLING, "name": "whmcs"},
        follow=True,
    )
    assert resp.status_code == 200
    token = APIToken.objects.get(name="whmcs")
    page = resp.content.decode()
    assert f"pdk_{token.prefix}_" in page  # the key, in the one-time message
    change = admin_client_.get(reverse("admin:hosting_apitoken_change", args=[token.pk]))
    assert token.digest not in change.content.decode()
    assert f"pdk_{token.prefix}_" in change.content.decode()  # its __str__, prefix only
    listing = admin_client_.get(reverse("admin:hosting_apitoken_changelist")).content.decode()
    assert token.digest not in listing


def test_token_add_reports_service_errors_on_the_form(admin_client_, owner):
    resp = admin_client_.post(
        reverse("admin:hosting_apitoken_add"), {"user": owner.pk, "scope": TokenScope.BILLING}
    )
    assert resp.status_code == 200
    assert "Only staff users can hold billing tokens." in resp.content.decode()
    assert not APIToken.objects.exists()


def test_revoke_action(admin_client_, staff):
    token, _ = issue_token(user=staff, scope=TokenScope.BILLING)
    admin_client_.post(
        reverse("admin:hosting_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.revoked_at is not None and not token.is_usable


def test_admin_changes_are_audited(admin_client_):
    host = HostFactory(name="h1")
    resp = admin_client_.post(
        reverse("admin:hosting_host_change", args=[host.pk]),
        {
            "name": "h1",
            "libvirt_uri": host.libvirt_uri,
            "backend": host.backend,
            "kind": host.kind,
            "state": "maintenance",
            "zone": "",
            "queue": host.queue,
            "storage_pool": host.storage_pool,
            "network": host.network,
            "disk_mode": host.disk_mode,
            "virt_type": host.virt_type,
            "cpu_overcommit": "4",
            "ram_overcommit": "1",
        },
    )
    assert resp.status_code == 302, resp.content
    event = AuditEvent.objects.get(action="admin.host.change")
    assert event.details == {"fields": ["state"]}


# Fields an admin page leaves out on purpose.
NOT_SHOWN = {
    "APIToken": {"digest"},  # never shown, not even read-only
    "Customer": {"members"},  # the Membership inline shows them
    # placement's usage counters, shown together as "usage" (with the free room, which
    # the generated room_* columns hold for placement's query)
    "Host": {
        "alloc_vcpus",
        "alloc_memory_mib",
        "alloc_disk_gib",
        "alloc_servers",
        "room_vcpus",
        "room_memory_mib",
        "room_disk_gib",
    },
    "Job": {"log"},  # shown as log_lines, one line each
    "Server": {"ssh_keys"},
}


@pytest.mark.parametrize("model", HOSTING_MODELS, ids=lambda m: m.__name__)
def test_change_pages_show_every_field(rf, staff, model):
    # so that a field added to a model later is not silently missing from its admin page
    request = rf.get("/")
    request.user = staff
    model_admin = admin.site._registry[model]
    obj = model()
    shown = {
        name for _, options in model_admin.get_fieldsets(request, obj) for name in options["fields"]
    }
    fields = {
        f.name
        for f in model._meta.get_fields()
        if (f.concrete or f.many_to_many) and not f.auto_created
    }
    assert fields - shown - NOT_SHOWN.get(model.__name__, set()) == set()


def test_adding_a_host_in_the_admin_reads_it_from_the_hypervisor(
    admin_client_, django_capture_on_commit_callbacks
):
    # given an admin adding a host; when the form is saved
    with django_capture_on_commit_callbacks(execute=False):
        resp = admin_client_.post(
            reverse("admin:hosting_host_add"),
            {
                "name": "hv9",
                "libvirt_uri": "qemu+tcp://10.0.0.9/system",
                "backend": "libvirt",
                "kind": "vm",
                "state": "offline",
                "zone": "",
                "queue": "paddock",
                "storage_pool": "paddock",
                "network": "default",
                "disk_mode": "overlay",
                "virt_type": "auto",
                "cpu_overcommit": "4",
                "ram_overcommit": "1",
            },
            follow=True,
        )
    assert resp.status_code == 200
    # then a refresh job is queued for a worker, and the admin is told
    job = Job.objects.get(host__name="hv9")
    assert job.kind == JobKind.HOST_REFRESH and job.status == JobStatus.QUEUED
    assert f"job #{job.pk}" in resp.content.decode()
    # and it is audited once, as the service does it for every caller, naming the admin
    events = AuditEvent.objects.filter(target_type="host", target_id=str(job.host_id))
    assert [(e.action, e.actor) for e in events] == [("host.create", job.requested_by)]


def test_every_plain_registry_action_is_an_admin_action(admin_client_, server):
    from hosting.actions import PLAIN_ACTIONS

    page = admin_client_.get(reverse("admin:hosting_server_changelist")).content.decode()
    for entry in PLAIN_ACTIONS:  # the others (snapshots, backups) take more than a server
        assert f'value="action_{entry.kind}"' in page, entry.kind


def test_a_token_made_in_the_admin_is_audited_once_naming_the_admin(admin_client_, staff, owner):
    resp = admin_client_.post(
        reverse("admin:hosting_apitoken_add"),
        {"user": owner.pk, "scope": TokenScope.READ, "customer": "", "name": "ci"},
        follow=True,
    )
    assert resp.status_code == 200
    token = APIToken.objects.get(user=owner)
    events = AuditEvent.objects.filter(target_type="apitoken", target_id=str(token.pk))
    assert [(e.action, e.actor, e.source_ip) for e in events] == [
        ("token.create", staff, "127.0.0.1")
    ]
