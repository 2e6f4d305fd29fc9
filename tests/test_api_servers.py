"""Server and customer creation through the API: validation, placement, errors."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hosting.access import Caller
from hosting.choices import JobKind, ServerState
from hosting.models import AuditEvent, IPAddress, Job, Server

from .factories import HostFactory, PlanFactory

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/v1/servers/", body, format="json")


def test_billing_creates_customer_with_owner_login(billing_client):
    resp = billing_client.post(
        "/api/v1/customers/",
        {
            "name": "Initech",
            "email": "ops@initech.example",
            "external_ref": "WHMCS-42",
            "owner": {"username": "peter", "password": "tps-reports-2026"},
        },
        format="json",
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["name"] == "Initech" and "owner" not in body
    user = get_user_model().objects.get(username="peter")
    assert user.check_password("tps-reports-2026")
    assert user.memberships.get().customer_id == body["id"]
    assert AuditEvent.objects.filter(action="customer.create", target_id=str(body["id"])).exists()


def test_customer_create_rejects_weak_password_and_keeps_nothing(billing_client):
    resp = billing_client.post(
        "/api/v1/customers/",
        {"name": "Weak", "email": "w@example.com", "owner": {"username": "w", "password": "123"}},
        format="json",
    )
    assert resp.status_code == 400
    assert "owner" in resp.json()["error"]["fields"]
    assert not get_user_model().objects.filter(username="w").exists()


def test_create_returns_202_with_job_and_audit(billing_client, customer, plan, image, host, pool):
    resp = create(
        billing_client,
        customer=customer.pk,
        plan=plan.pk,
        image=image.pk,
        hostname="db-1.example.com",
    )
    assert resp.status_code == 202
    job = Job.objects.get(pk=resp.json()["id"])
    assert job.kind == JobKind.PROVISION and job.status == "queued"
    server = job.server
    assert server.state == ServerState.PENDING and server.host == host
    assert server.addresses.get().address == "192.0.2.2"
    event = AuditEvent.objects.get(action="server.create")
    assert event.token is not None and event.source_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("hostname", "field"),
    [("-bad", "hostname"), ("a" * 64, "hostname"), ("under_score", "hostname"), ("", "hostname")],
)
def test_bad_hostname_is_400_per_field(owner_client, plan, image, host, pool, hostname, field):
    resp = create(owner_client, plan=plan.pk, image=image.pk, hostname=hostname)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]
    assert not Server.objects.exists()


def test_missing_fields_are_listed(owner_client):
    resp = create(owner_client)
    assert resp.status_code == 400
    assert set(resp.json()["error"]["fields"]) >= {"plan", "image", "hostname"}


def test_no_capacity_is_a_clear_error_and_nothing_half_created(owner_client, image, host, pool):
    huge = PlanFactory(name="Huge", vcpus=4, memory_mib=64 * 1024, disk_gib=10)
    resp = create(owner_client, plan=huge.pk, image=image.pk, hostname="big")
    assert resp.status_code == 400
    assert "No online virtual machine host has room" in resp.json()["error"]["message"]
    assert not Server.objects.exists()
    assert not Job.objects.exists()
    assert not IPAddress.objects.exists()


def test_exhausted_pool_rolls_back(owner_client, plan, image, host):
    from .factories import IPPoolFactory

    IPPoolFactory(network="198.51.100.0/30", gateway="198.51.100.1")  # one usable: .2
    assert create(owner_client, plan=plan.pk, image=image.pk, hostname="a").status_code == 202
    resp = create(owner_client, plan=plan.pk, image=image.pk, hostname="b")
    assert resp.status_code == 400
    assert "no free address" in resp.json()["error"]["message"]
    assert list(Server.objects.values_list("hostname", flat=True)) == ["a"]


def test_placement_prefers_host_with_most_free_memory(owner_client, plan, image, pool):
    HostFactory(name="small", memory_mib=1024)
    big = HostFactory(name="big", memory_mib=8192)
    HostFactory(name="offline", memory_mib=65536, state="offline")
    resp = create(owner_client, plan=plan.pk, image=image.pk, hostname="p")
    assert Job.objects.get(pk=resp.json()["id"]).server.host == big


def test_second_action_while_job_active_is_409(billing_client, customer, plan, image, host, pool):
    resp = create(billing_client, customer=customer.pk, plan=plan.pk, image=image.pk, hostname="x")
    server = Job.objects.get(pk=resp.json()["id"]).server
    Server.objects.filter(pk=server.pk).update(state=ServerState.RUNNING)
    # the provision job is still queued: a second job for this server conflicts
    resp = billing_client.post(f"/api/v1/servers/{server.uuid}/reboot/")
    assert resp.status_code == 409
    assert "already has a job" in resp.json()["error"]["message"]


def test_server_list_query_count_does_not_grow_with_page_size(
    billing_client, customer, plan, image, host, pool
):
    from hosting.services.servers import create_server

    for i in range(30):
        create_server(
            caller=Caller.system(), customer=customer, plan=plan, image=image, hostname=f"s{i}"
        )

    def count(page_size):
        with CaptureQueriesContext(connection) as ctx:
            resp = billing_client.get(f"/api/v1/servers/?page_size={page_size}")
        assert resp.status_code == 200 and len(resp.json()["results"]) == page_size
        return len(ctx.captured_queries)

    billing_client.get("/api/v1/servers/")  # the first use of a token records last_used_at
    small, large = count(2), count(30)
    assert small == large
    assert large <= 5  # session/token, count, page, addresses


@pytest.mark.parametrize("url", ["/api/v1/jobs/", "/api/v1/customers/", "/api/v1/ssh-keys/"])
def test_other_list_query_counts_are_flat(billing_client, customer, plan, image, host, pool, url):
    from hosting.services.servers import create_server

    from .factories import CustomerFactory, SSHKeyFactory

    for i in range(12):
        create_server(
            caller=Caller.system(), customer=customer, plan=plan, image=image, hostname=f"s{i}"
        )
        SSHKeyFactory(customer=CustomerFactory())

    def count(page_size):
        with CaptureQueriesContext(connection) as ctx:
            resp = billing_client.get(f"{url}?page_size={page_size}")
        assert resp.status_code == 200 and len(resp.json()["results"]) == page_size
        return len(ctx.captured_queries)

    billing_client.get(url)  # the first use of a token records last_used_at
    assert count(2) == count(12)


def test_filters_and_ordering(billing_client, customer, plan, image, host, pool):
    from hosting.services.servers import create_server

    for name in ["b", "a", "c"]:
        create_server(
            caller=Caller.system(), customer=customer, plan=plan, image=image, hostname=name
        )
    Server.objects.filter(hostname="c").update(state=ServerState.RUNNING)
    body = billing_client.get("/api/v1/servers/?state=running").json()
    assert [r["hostname"] for r in body["results"]] == ["c"]
    body = billing_client.get("/api/v1/servers/?ordering=hostname").json()
    assert [r["hostname"] for r in body["results"]] == ["a", "b", "c"]
    body = billing_client.get(f"/api/v1/servers/?host={host.pk}&customer={customer.pk}").json()
    assert body["count"] == 3
    bad = billing_client.get("/api/v1/servers/?state=flying")
    assert bad.status_code == 400


def test_ssh_key_validation(owner_client):
    resp = owner_client.post(
        "/api/v1/ssh-keys/", {"name": "k", "public_key": "ssh-rsa notbase64!"}, format="json"
    )
    assert resp.status_code == 400
    assert "public_key" in resp.json()["error"]["fields"]
    from .factories import make_public_key

    resp = owner_client.post(
        "/api/v1/ssh-keys/", {"name": "laptop", "public_key": make_public_key(3)}, format="json"
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["fingerprint"].startswith("SHA256:")
    again = owner_client.post(
        "/api/v1/ssh-keys/", {"name": "laptop2", "public_key": make_public_key(3)}, format="json"
    )
    assert again.status_code == 400


def test_schema_is_valid_openapi(billing_client):
    resp = billing_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert resp.status_code == 200
    schema = resp.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in [
        "/api/v1/servers/",
        "/api/v1/servers/{uuid}/",
        "/api/v1/servers/{uuid}/force-stop/",
        "/api/v1/jobs/{id}/",
        "/api/v1/customers/",
        "/api/v1/ssh-keys/",
        "/api/v1/hosts/",
    ]:
        assert path in paths, path
    assert "202" in paths["/api/v1/servers/"]["post"]["responses"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_schema_is_public_and_docs_render(anon_client):
    assert anon_client.get("/api/schema/").status_code == 200
    docs = anon_client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/servers/{uuid}/reboot/" in out.read_text()
