"""Filter choices are what the caller may see: naming another customer's object answers
exactly as naming one that does not exist (issue 7 #11)."""

from __future__ import annotations

import pytest

from .factories import ImageFactory, PlanFactory, ServerFactory, SSHKeyFactory

pytestmark = pytest.mark.django_db

MISSING = 999_999


def same_answer(client, url: str, param: str, foreign: int) -> dict:
    """Asserts that `foreign` and a made-up id get the same status and body."""
    a = client.get(url, {param: foreign})
    b = client.get(url, {param: MISSING})
    assert a.status_code == b.status_code == 400, (a.content, b.content)
    body_a = str(a.json()).replace(str(foreign), "ID")
    body_b = str(b.json()).replace(str(MISSING), "ID")
    assert body_a == body_b
    return a.json()


def test_ssh_key_customer_filter_does_not_reveal_other_customers(
    owner_client, customer, other_customer
):
    # given a key of each customer
    SSHKeyFactory(customer=customer)
    SSHKeyFactory(customer=other_customer)
    # when the owner filters on the other customer's id, then it is "not a valid choice"
    body = same_answer(owner_client, "/api/v1/ssh-keys/", "customer", other_customer.pk)
    assert "customer" in body["error"]["fields"]
    # while its own customer filters as before
    own = owner_client.get("/api/v1/ssh-keys/", {"customer": customer.pk})
    assert own.status_code == 200 and own.json()["count"] == 1


def test_ssh_key_customer_filter_is_open_to_the_provider(billing_client, other_customer):
    SSHKeyFactory(customer=other_customer)
    resp = billing_client.get("/api/v1/ssh-keys/", {"customer": other_customer.pk})
    assert resp.status_code == 200 and resp.json()["count"] == 1


def test_server_plan_and_image_filters_do_not_reveal_hidden_catalogue(
    owner_client, billing_client, server, other_customer
):
    # given an inactive plan and image used only by another customer's server
    hidden_plan = PlanFactory(is_active=False)
    hidden_image = ImageFactory(is_active=False)
    ServerFactory(customer=other_customer, plan=hidden_plan, image=hidden_image)
    # then naming them is the same as naming nothing that exists
    same_answer(owner_client, "/api/v1/servers/", "plan", hidden_plan.pk)
    same_answer(owner_client, "/api/v1/servers/", "image", hidden_image.pk)
    # and the caller's own server's plan filters even after it is withdrawn
    type(server.plan).objects.filter(pk=server.plan_id).update(is_active=False)
    own = owner_client.get("/api/v1/servers/", {"plan": server.plan_id})
    assert own.status_code == 200 and own.json()["count"] == 1
    # and the provider sees every plan
    assert billing_client.get("/api/v1/servers/", {"plan": hidden_plan.pk}).status_code == 200
