"""One contract per resource: anonymous 401, another customer 404, owner OK,
a read-scoped token cannot write, a billing token acts for any customer."""

from __future__ import annotations

import pytest

from hosting.access import Caller
from hosting.choices import JobKind
from hosting.models import Job, Server

from .factories import SSHKeyFactory, make_public_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(server):
    return Job.objects.create(kind=JobKind.PROVISION, server=server, status="succeeded")


@pytest.fixture
def ssh_key(customer):
    return SSHKeyFactory(customer=customer)


def detail_urls(server, job, ssh_key, customer):
    return [
        f"/api/v1/servers/{server.uuid}/",
        f"/api/v1/jobs/{job.pk}/",
        f"/api/v1/ssh-keys/{ssh_key.pk}/",
        f"/api/v1/customers/{customer.pk}/",
    ]


LIST_URLS = [
    "/api/v1/servers/",
    "/api/v1/jobs/",
    "/api/v1/ssh-keys/",
    "/api/v1/customers/",
    "/api/v1/plans/",
    "/api/v1/images/",
]


@pytest.mark.parametrize("url", [*LIST_URLS, "/api/v1/hosts/"])
def test_anonymous_is_401(anon_client, url):
    resp = anon_client.get(url)
    assert resp.status_code == 401
    assert resp.json()["error"]["status"] == 401


def test_other_customer_gets_404_for_every_object(other_client, server, job, ssh_key, customer):
    for url in detail_urls(server, job, ssh_key, customer):
        assert other_client.get(url).status_code == 404, url
    # and its actions and deletes are 404 too, never 403
    assert other_client.post(f"/api/v1/servers/{server.uuid}/stop/").status_code == 404
    assert other_client.delete(f"/api/v1/servers/{server.uuid}/").status_code == 404
    assert other_client.delete(f"/api/v1/ssh-keys/{ssh_key.pk}/").status_code == 404
    assert not Job.objects.filter(kind=JobKind.STOP).exists()


def test_other_customer_lists_do_not_leak(other_client, server, job, ssh_key):
    # given objects of Acme only; when Globex lists; then it sees none of them
    for url in ["/api/v1/servers/", "/api/v1/jobs/", "/api/v1/ssh-keys/", "/api/v1/customers/"]:
        body = other_client.get(url).json()
        if url == "/api/v1/customers/":
            assert [r["name"] for r in body["results"]] == ["Globex"]
        else:
            assert body["count"] == 0, url


def test_owner_sees_own_objects(owner_client, server, job, ssh_key, customer):
    for url in detail_urls(server, job, ssh_key, customer):
        assert owner_client.get(url).status_code == 200, url
    body = owner_client.get("/api/v1/servers/").json()
    assert [r["hostname"] for r in body["results"]] == ["web-1"]


def test_read_scope_cannot_write(read_client, server, customer, plan, image):
    assert read_client.get(f"/api/v1/servers/{server.uuid}/").status_code == 200
    attempts = [
        read_client.post(f"/api/v1/servers/{server.uuid}/stop/"),
        read_client.delete(f"/api/v1/servers/{server.uuid}/"),
        read_client.post(
            "/api/v1/servers/",
            {"plan": plan.pk, "image": image.pk, "hostname": "x"},
            format="json",
        ),
        read_client.post(
            "/api/v1/ssh-keys/", {"name": "k", "public_key": make_public_key(9)}, format="json"
        ),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    assert not Job.objects.exists()


def test_billing_acts_for_any_customer(billing_client, server, other_customer, host, pool):
    assert billing_client.get(f"/api/v1/servers/{server.uuid}/").status_code == 200
    resp = billing_client.post(f"/api/v1/servers/{server.uuid}/stop/")
    assert resp.status_code == 202
    assert resp.json()["kind"] == "stop"
    assert resp.json()["status"] == "queued"
    names = {r["name"] for r in billing_client.get("/api/v1/customers/").json()["results"]}
    assert names == {"Acme", "Globex"}


def test_customer_cannot_suspend(owner_client, billing_client, server):
    assert owner_client.post(f"/api/v1/servers/{server.uuid}/suspend/").status_code == 403
    assert billing_client.post(f"/api/v1/servers/{server.uuid}/suspend/").status_code == 202


def test_hosts_are_staff_only(owner_client, billing_client, staff, host):
    from rest_framework.test import APIClient

    assert owner_client.get("/api/v1/hosts/").status_code == 403
    client = APIClient()
    client.force_login(staff)
    assert client.get("/api/v1/hosts/").json()["results"][0]["name"] == host.name


def test_customer_cannot_create_customers_or_plans(owner_client):
    assert (
        owner_client.post(
            "/api/v1/customers/", {"name": "X", "email": "x@example.com"}, format="json"
        ).status_code
        == 403
    )
    assert (
        owner_client.post(
            "/api/v1/plans/",
            {"name": "P", "vcpus": 1, "memory_mib": 128, "disk_gib": 1},
            format="json",
        ).status_code
        == 403
    )


def test_body_cannot_name_another_customers_objects(other_client, customer, ssh_key, plan, image):
    resp = other_client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": "evil"},
        format="json",
    )
    assert resp.status_code == 400
    assert "customer" in resp.json()["error"]["fields"]
    resp = other_client.post(
        "/api/v1/servers/",
        {"plan": plan.pk, "image": image.pk, "hostname": "evil", "ssh_keys": [ssh_key.pk]},
        format="json",
    )
    assert resp.status_code == 400
    assert "ssh_keys" in resp.json()["error"]["fields"]
    assert not Server.objects.filter(hostname="evil").exists()


def test_expired_and_revoked_tokens_are_401(owner, customer, server):
    from datetime import timedelta

    from django.utils import timezone
    from rest_framework.test import APIClient

    from hosting.services.tokens import issue_token, revoke_token

    token, key = issue_token(user=owner, scope="customer", customer=customer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/servers/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    revoke_token(token=token, caller=Caller(user=owner))
    assert client.get("/api/v1/servers/").status_code == 401
    token2, key2 = issue_token(user=owner, scope="customer", customer=customer)
    type(token2).objects.filter(pk=token2.pk).update(expires_at=timezone.now() - timedelta(1))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key2}")
    assert client.get("/api/v1/servers/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer pdk_nothere_x")
    assert client.get("/api/v1/servers/").status_code == 401


def test_catalogue_writes_are_staff_only_and_audited(staff):
    from rest_framework.test import APIClient

    from hosting.models import AuditEvent

    client = APIClient()
    client.force_login(staff)
    resp = client.post(
        "/api/v1/plans/",
        {"name": "Large", "vcpus": 4, "memory_mib": 4096, "disk_gib": 80, "monthly_price": "20"},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    plan_id = resp.json()["id"]
    assert (
        client.patch(f"/api/v1/plans/{plan_id}/", {"is_active": False}, format="json").status_code
        == 200
    )
    assert client.delete(f"/api/v1/plans/{plan_id}/").status_code == 204
    actions = list(
        AuditEvent.objects.filter(target_type="plan")
        .order_by("id")
        .values_list("action", "actor__username")
    )
    assert actions == [("plan.create", "admin"), ("plan.update", "admin"), ("plan.delete", "admin")]


def test_token_creation_and_revocation_are_audited(owner, customer):
    from hosting.models import AuditEvent
    from hosting.services.tokens import issue_token, revoke_token

    token, key = issue_token(user=owner, scope="read", customer=customer)
    assert key not in str(token.digest) and token.digest != key
    revoke_token(token=token, caller=Caller(user=owner))
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "token.create",
        "token.revoke",
    ]


def test_filters_do_not_reveal_other_customers_or_hosts(owner_client, other_customer, host):
    # naming another customer's id answers exactly as naming an id that does not exist
    foreign = owner_client.get(f"/api/v1/servers/?customer={other_customer.pk}")
    missing = owner_client.get("/api/v1/servers/?customer=999999")
    assert foreign.status_code == missing.status_code == 400
    assert foreign.json()["error"]["fields"] == missing.json()["error"]["fields"]
    assert owner_client.get(f"/api/v1/servers/?host={host.pk}").status_code == 400
    assert owner_client.get(f"/api/v1/jobs/?host={host.pk}").status_code == 400


def test_every_plain_registry_action_has_its_api_route(billing_client, server):
    from hosting.actions import PLAIN_ACTIONS

    schema = billing_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for entry in PLAIN_ACTIONS:  # snapshots and backups have routes of their own
        if entry.api_delete:
            assert "delete" in schema["paths"]["/api/v1/servers/{uuid}/"]
        else:
            assert "post" in schema["paths"][f"/api/v1/servers/{{uuid}}/{entry.slug}/"]


def test_snapshot_and_backup_routes_are_in_the_schema(billing_client):
    paths = billing_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/servers/{uuid}/snapshots/"])
    assert {"get", "delete"} <= set(paths["/api/v1/servers/{uuid}/snapshots/{snapshot_id}/"])
    assert "post" in paths["/api/v1/servers/{uuid}/snapshots/{snapshot_id}/revert/"]
    assert {"get", "post"} <= set(paths["/api/v1/servers/{uuid}/backups/"])
    for route in ("verify", "restore", "restore-new"):
        assert "post" in paths[f"/api/v1/backups/{{uuid}}/{route}/"]
