"""Management commands: create_api_token and the idempotent demo seed."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from hosting.choices import HostState, JobKind, MemberRole, TokenScope
from hosting.models import Customer, Host, Image, IPPool, Job, Membership, Plan
from hosting.services.tokens import find_token
from testbed.local import Mode

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def test_driver_demo(monkeypatch):
    """The seed's test-driver mode, whatever this machine could run (tests/test_demo_modes.py
    covers the real-VM mode)."""
    from devtools.management.commands import seed_demo

    monkeypatch.setattr(seed_demo, "demo_mode", lambda: Mode(real=False, reason="a test"))


def run(*args, **kwargs) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_create_api_token_prints_a_working_key(staff):
    out, err = run("create_api_token", "admin", "--scope", "billing", "--name", "whmcs")
    key = out.strip()
    token = find_token(key)
    assert token is not None and token.scope == TokenScope.BILLING and token.name == "whmcs"
    assert token.user == staff and token.expires_at is None
    assert "copy it now" in err


def test_create_api_token_for_a_customer_with_expiry(owner, customer):
    out, _ = run("create_api_token", owner.username, "--scope", "customer", "--expires-days", "30")
    token = find_token(out.strip())
    assert token.customer == customer
    assert 29 <= (token.expires_at - token.created_at).days <= 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "--scope", "read"], "No user named 'nobody'"),
        (["acme-owner", "--scope", "billing"], "Only staff users can hold billing tokens."),
        (["acme-owner", "--scope", "read", "--customer", "999999"], "No customer with id"),
        (["acme-owner", "--scope", "read", "--expires-days", "0"], "at least 1"),
    ],
)
def test_create_api_token_errors(owner, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_token", *args)


def test_create_api_token_rejects_an_unknown_scope(owner):
    with pytest.raises(CommandError):
        run("create_api_token", owner.username, "--scope", "root")


def test_seed_demo_is_idempotent(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "admin-pass-for-test")
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-for-test")
    # given a first seed
    with django_capture_on_commit_callbacks(execute=False):
        out, _ = run("seed_demo", url="http://127.0.0.1:9999/")
    counts = [m.objects.count() for m in (Customer, Plan, Image, IPPool, Host, Membership)]
    # when the host is put into maintenance and the seed runs again
    Host.objects.update(state=HostState.MAINTENANCE)
    with django_capture_on_commit_callbacks(execute=False):
        run("seed_demo")
    # then nothing is duplicated, and the demo host is back online: it is the one host of
    # the test-driver mode (tests/test_demo_modes.py: the states follow the mode)
    expected = [1, 4, 3, 2, 1, 1]
    assert counts == expected
    assert [m.objects.count() for m in (Customer, Plan, Image, IPPool, Host, Membership)] == (
        expected
    )
    host = Host.objects.get()
    assert host.libvirt_uri == "test:///default" and host.state == HostState.ONLINE
    assert "Demo mode: libvirt test driver: no real guests, because a test." in out
    assert (host.storage_pool, host.network, host.queue) == ("default-pool", "default", "paddock")
    assert sorted(IPPool.objects.values_list("network", flat=True)) == [
        "192.0.2.0/24",
        "2001:db8::/64",
    ]
    # the credentials printed are the ones that work
    assert "http://127.0.0.1:9999/" in out
    assert "admin / admin-pass-for-test" in out and "demo / demo-pass-for-test" in out
    User = get_user_model()
    admin, demo = User.objects.get(username="admin"), User.objects.get(username="demo")
    assert admin.is_staff and admin.is_superuser and admin.check_password("admin-pass-for-test")
    assert not demo.is_staff and demo.check_password("demo-pass-for-test")
    assert Membership.objects.get(user=demo).role == MemberRole.OWNER
    # the capacity is read by the worker: each seed queued a refresh job for the host
    assert Job.objects.filter(kind=JobKind.HOST_REFRESH, host=host).count() == 2


def test_seed_demo_without_a_broker_says_so(monkeypatch):
    from devtools.management.commands import seed_demo

    monkeypatch.setattr(seed_demo, "broker_reachable", lambda: False)
    out, _ = run("seed_demo")
    assert "does not answer" in out
    assert not Job.objects.exists()
