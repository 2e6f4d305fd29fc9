"""Login throttling for the panel and the admin (issue 7 #9, first half): after the limit of
failed logins, even the right password is refused from that address."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from .factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # UserFactory's
LOGIN_URLS = {"panel": "login", "admin": "admin:login"}


def log_in(client: Client, url: str, username: str, password: str, ip: str = "192.0.2.7"):
    return client.post(reverse(url), {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("where", LOGIN_URLS)
def test_failed_logins_lock_out_even_the_right_password(where):
    # given a user (staff, so the admin would let them in)
    user = UserFactory(username="victim", is_staff=True)
    client = Client()
    url = LOGIN_URLS[where]
    # when the password is guessed wrong as often as the limit allows
    for n in range(settings.AXES_FAILURE_LIMIT):
        resp = log_in(client, url, user.username, f"guess-{n}")
        assert resp.status_code in (200, 429) and not signed_in(client)
    # then the right password is refused too, from that address
    resp = log_in(client, url, user.username, PASSWORD)
    assert resp.status_code == 429
    assert "Too many failed logins" in resp.content.decode()
    assert not signed_in(client)


def test_lockout_is_per_user_name_and_address():
    victim = UserFactory(username="victim")
    other = UserFactory(username="bystander")
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "login", victim.username, f"guess-{n}")
    # another user from the same address, and the same user from another address, sign in
    bystander = Client()
    assert log_in(bystander, "login", other.username, PASSWORD).status_code == 302
    assert signed_in(bystander)
    elsewhere = Client()
    assert (
        log_in(elsewhere, "login", victim.username, PASSWORD, ip="198.51.100.9").status_code == 302
    )
    assert signed_in(elsewhere)


def test_a_successful_login_resets_the_count():
    user = UserFactory(username="forgetful")
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "login", user.username, f"guess-{n}")
    assert log_in(client, "login", user.username, PASSWORD).status_code == 302
    client.logout()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "login", user.username, f"guess-{n}")
    assert log_in(client, "login", user.username, PASSWORD).status_code == 302
