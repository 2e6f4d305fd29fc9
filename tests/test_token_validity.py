"""An API token acts only while its user may (issue 7 findings #1 and #2): it stops
working with the next request once its user leaves the customer, is deactivated, its
customer is suspended, or (billing tokens) its user loses staff status; even though the
lookup is cached."""

from __future__ import annotations

import pytest
from django.test import override_settings

from hosting.access import Caller
from hosting.choices import CustomerStatus, TokenScope
from hosting.models import Membership
from hosting.services.tokens import revoke_token

from .conftest import token_client
from .factories import make_public_key

DENIED = 401


def calls(client, server) -> dict[str, int]:
    """What a token does: list servers, stop a server, add an SSH key (status codes)."""
    return {
        "list": client.get("/api/v1/servers/").status_code,
        "stop": client.post(f"/api/v1/servers/{server.uuid}/stop/").status_code,
        "add key": client.post(
            "/api/v1/ssh-keys/",
            {"customer": server.customer_id, "name": "k", "public_key": make_public_key(7)},
            format="json",
        ).status_code,
    }


def works(client, server) -> bool:
    response = client.get("/api/v1/servers/")
    return response.status_code == 200 and response.json()["count"] == 1


DENIED_ALL = {"list": DENIED, "stop": DENIED, "add key": DENIED}


@pytest.fixture
def customer_token(owner, customer):
    return token_client(owner, TokenScope.CUSTOMER, customer)


def test_customer_token_stops_when_its_user_leaves_the_customer(customer_token, owner, server):
    # given a customer token that works (and whose lookup is now cached)
    assert works(customer_token, server)
    assert works(customer_token, server)
    # when its user's membership is deleted
    Membership.objects.filter(user=owner).delete()
    # then the very next requests are refused: no list, no stop, no new key
    assert calls(customer_token, server) == DENIED_ALL


def test_customer_token_stops_when_its_user_is_deactivated(customer_token, owner, server):
    assert works(customer_token, server)
    owner.is_active = False
    owner.save()
    assert calls(customer_token, server) == DENIED_ALL


def test_customer_token_stops_when_the_customer_is_suspended(customer_token, customer, server):
    assert works(customer_token, server)
    customer.status = CustomerStatus.SUSPENDED
    customer.save()
    assert calls(customer_token, server) == DENIED_ALL


def test_customer_token_works_again_when_the_user_rejoins(customer_token, owner, customer, server):
    assert works(customer_token, server)
    Membership.objects.filter(user=owner).delete()
    assert customer_token.get("/api/v1/servers/").status_code == DENIED
    Membership.objects.create(user=owner, customer=customer)
    assert works(customer_token, server)


def test_billing_token_stops_when_its_user_loses_staff_status(staff, server):
    # given a billing token that works
    billing = token_client(staff, TokenScope.BILLING)
    assert works(billing, server)
    # when its user is no longer staff
    staff.is_staff = False
    staff.is_superuser = False
    staff.save()
    # then it is refused at once
    assert calls(billing, server) == DENIED_ALL


def test_revoked_token_stops_at_once(owner, customer, server):
    from hosting.models import APIToken

    client = token_client(owner, TokenScope.CUSTOMER, customer)
    assert works(client, server)
    revoke_token(token=APIToken.objects.get(user=owner), caller=Caller(user=owner))
    assert client.get("/api/v1/servers/").status_code == DENIED


def test_a_login_does_not_disturb_tokens(customer_token, owner, server, client):
    # given a working token; when its user signs in to the panel (last_login saved)
    assert works(customer_token, server)
    client.force_login(owner)
    # then the token keeps working
    assert works(customer_token, server)


@override_settings(API_TOKEN_CACHE_SECONDS=0)
def test_without_the_cache_the_same_rules_hold(customer_token, owner, server):
    assert works(customer_token, server)
    Membership.objects.filter(user=owner).delete()
    assert calls(customer_token, server) == DENIED_ALL


def test_a_wrong_secret_with_a_cached_prefix_is_refused(owner, customer, server):
    from rest_framework.test import APIClient

    from hosting.services.tokens import issue_token

    _, key = issue_token(user=owner, scope=TokenScope.CUSTOMER, customer=customer)
    good, bad = APIClient(), APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    bad.credentials(HTTP_AUTHORIZATION=f"Bearer {key[:-4]}AAAA")
    assert works(good, server)  # the lookup is cached now
    assert bad.get("/api/v1/servers/").status_code == DENIED


def test_a_cached_token_costs_no_query(customer_token, server):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given a token used once (its lookup and its checks are cached now)
    assert works(customer_token, server)
    # when it is used again
    with CaptureQueriesContext(connection) as ctx:
        assert works(customer_token, server)
    # then neither the token, nor the membership, nor the customer is read
    tables = " ".join(q["sql"] for q in ctx.captured_queries)
    assert "hosting_apitoken" not in tables
    assert "hosting_membership" not in tables
    assert 'FROM "hosting_customer"' not in tables


def test_the_cache_holds_no_password_hash(owner, customer, server):
    from rest_framework.test import APIClient

    from hosting.services import token_auth
    from hosting.services.tokens import issue_token

    # given a token used once (its lookup is cached now)
    token, key = issue_token(user=owner, scope=TokenScope.CUSTOMER, customer=customer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert works(client, server)
    # then what Redis holds for it carries no password hash
    raw = token_auth._redis().get(token_auth._key(token.prefix))
    assert raw is not None
    assert owner.password.encode() not in raw
    # and the user it gives back still reads and keeps its password
    cached = token_auth.authenticate_key(key)
    assert cached is not None and cached.user.check_password("correct-horse-battery")
    cached.user.first_name = "Changed"
    cached.user.save()
    owner.refresh_from_db()
    assert owner.check_password("correct-horse-battery")
