"""Issue 7 #9: the demo's published passwords work only on this machine.

`make run HOST=0.0.0.0` with them is refused at start, and the login refuses them for a
request that did not come from loopback (the panel's login and the admin's).
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from hosting.demo_passwords import DEMO_ADMIN_PASSWORD, DEMO_PASSWORD, is_loopback

from .factories import UserFactory

pytestmark = pytest.mark.django_db

OUTSIDE = "203.0.113.7"


# --- at start: runstack ------------------------------------------------------------------


@pytest.fixture
def published_passwords(monkeypatch):
    """The seed's passwords left at their defaults (an empty variable means the default)."""
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "")
    monkeypatch.setenv("DEMO_PASSWORD", "")


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.10"])
def test_runstack_refuses_to_listen_outside_with_the_published_passwords(published_passwords, bind):
    # when `make run HOST=...` would seed the published passwords and listen beyond loopback
    with pytest.raises(CommandError) as refused:
        call_command("runstack", "--seed", "--bind", bind, "--port", "1")
    # then it refuses before starting anything, and says what to do
    message = str(refused.value)
    assert f"Refusing to listen on {bind}" in message
    assert "admin, demo" in message
    assert "Set DEMO_ADMIN_PASSWORD and DEMO_PASSWORD" in message


def test_runstack_names_only_the_login_whose_password_is_published(monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "an-admin-passphrase-of-mine")
    monkeypatch.setenv("DEMO_PASSWORD", "")
    with pytest.raises(CommandError, match=r"the demo logins demo have"):
        call_command("runstack", "--seed", "--bind", "0.0.0.0", "--port", "1")


def test_runstack_without_seed_checks_the_logins_in_the_database(published_passwords):
    # given demo logins seeded earlier with the published passwords
    UserFactory(username="admin", password=DEMO_ADMIN_PASSWORD, is_staff=True)
    UserFactory(username="demo", password="a-passphrase-of-my-own")
    # when runstack would listen on every address without seeding
    with pytest.raises(CommandError, match=r"the demo logins admin have"):
        call_command("runstack", "--bind", "0.0.0.0", "--port", "1")


def test_own_passwords_or_loopback_are_accepted(monkeypatch):
    from devtools.management.commands.runstack import published_password_logins

    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "an-admin-passphrase-of-mine")
    monkeypatch.setenv("DEMO_PASSWORD", "a-customer-passphrase-of-mine")
    assert published_password_logins(seed=True) == []
    monkeypatch.setenv("DEMO_PASSWORD", "")
    assert published_password_logins(seed=True) == ["demo"]
    # loopback is what the published passwords are for
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.10", "example.net", ""]))


# --- at login: the authentication backend -------------------------------------------------


@pytest.fixture
def demo_user():
    return UserFactory(username="demo", password=DEMO_PASSWORD)


@pytest.fixture
def demo_admin():
    return UserFactory(
        username="admin", password=DEMO_ADMIN_PASSWORD, is_staff=True, is_superuser=True
    )


def login(client, username: str, password: str, *, url: str = "login", **meta):
    return client.post(reverse(url), {"username": username, "password": password}, **meta)


def test_the_panel_login_refuses_a_demo_password_from_outside(client, demo_user):
    # when the demo customer logs in with the published password from another machine
    resp = login(client, "demo", DEMO_PASSWORD, REMOTE_ADDR=OUTSIDE)
    # then the login fails like a wrong password, and no session is opened
    assert resp.status_code == 200
    assert "_auth_user_id" not in client.session
    # while the same login from this machine works
    resp = login(client, "demo", DEMO_PASSWORD, REMOTE_ADDR="127.0.0.1")
    assert resp.status_code == 302
    assert client.session["_auth_user_id"] == str(demo_user.pk)


def test_a_proxy_on_loopback_does_not_make_a_request_local(client, demo_user):
    resp = login(
        client, "demo", DEMO_PASSWORD, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE
    )
    assert resp.status_code == 200
    assert "_auth_user_id" not in client.session


def test_the_admin_login_refuses_a_demo_password_from_outside(client, demo_admin):
    resp = login(client, "admin", DEMO_ADMIN_PASSWORD, url="admin:login", REMOTE_ADDR=OUTSIDE)
    assert resp.status_code == 200
    assert "_auth_user_id" not in client.session
    resp = login(client, "admin", DEMO_ADMIN_PASSWORD, url="admin:login", REMOTE_ADDR="::1")
    assert resp.status_code == 302


def test_other_passwords_work_from_anywhere(client):
    user = UserFactory(username="acme-owner", password="correct-horse-battery")
    resp = login(client, "acme-owner", "correct-horse-battery", REMOTE_ADDR=OUTSIDE)
    assert resp.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
