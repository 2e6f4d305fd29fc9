"""Issue 7 #17: the demo seed never collides with, nor overwrites, what an admin changed.

The admin edits the catalogue through the REST API (a superuser's session, as the browsable
API or a script would), between two runs of the seed; `make run` runs the seed every time.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from devtools.management.commands import seed_demo
from hosting.choices import HostState
from hosting.models import Host, Image, Plan
from testbed.local import Mode

from .factories import ImageFactory, PlanFactory

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture(autouse=True)
def test_driver_demo(monkeypatch):
    monkeypatch.setattr(seed_demo, "demo_mode", lambda: Mode(real=False, reason="a test"))
    monkeypatch.setattr(seed_demo, "broker_reachable", lambda: False)


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def admin_api() -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.get(username="admin"))
    return client


def patch(client: APIClient, resource: str, pk: int, **fields) -> None:
    resp = client.patch(f"{API}/{resource}/{pk}/", fields, format="json")
    assert resp.status_code == 200, resp.content


def catalogue() -> dict:
    return {
        "plans": {p.name: (p.monthly_price, p.is_active) for p in Plan.objects.all()},
        "images": {i.volume_name: (i.name, i.is_active) for i in Image.objects.all()},
        "hosts": {h.name: (h.libvirt_uri, h.state) for h in Host.objects.all()},
    }


def test_the_seed_keeps_what_an_admin_changed_through_the_api():
    # given the demo, seeded once
    seed()
    api = admin_api()
    tiny, nano = Plan.objects.get(name="Tiny"), Plan.objects.get(name="Nano")
    debian = Image.objects.get(name="Debian 12")
    ubuntu = Image.objects.get(name="Ubuntu 24.04")
    alpine = Image.objects.get(name="Alpine 3.20")
    host = Host.objects.get(name="demo-host")

    # when an admin changes a price, deactivates a plan, renames an image away and another
    # image to the name the seed uses, deletes an image, and renames the demo host
    patch(api, "plans", tiny.pk, monthly_price="9.99")
    patch(api, "plans", nano.pk, is_active=False)
    patch(api, "images", debian.pk, name="Debian 12 (old)")
    patch(api, "images", ubuntu.pk, name="Debian 12")
    assert api.delete(f"{API}/images/{alpine.pk}/").status_code == 204
    patch(api, "hosts", host.pk, name="lab-1")
    edited = catalogue()

    # then the seed runs again without an error, and changes none of it
    out = seed()
    assert catalogue() == edited
    assert edited["plans"]["Tiny"] == (Decimal("9.99"), True)
    assert edited["plans"]["Nano"][1] is False
    assert edited["images"] == {
        "debian-12.qcow2": ("Debian 12 (old)", True),
        "ubuntu-24.04.qcow2": ("Debian 12", True),
    }
    assert edited["hosts"] == {"lab-1": ("test:///default", HostState.ONLINE)}
    # and it says what it left alone
    assert "The seed left alone what was changed after it ran:" in out
    assert "kept plan 'Tiny' as an admin changed it: monthly_price '9.99'" in out
    assert "(the demo's: '1.50')" in out
    assert "kept plan 'Nano' as an admin changed it: is_active False" in out
    assert "kept image 'debian-12.qcow2' as an admin changed it: name 'Debian 12 (old)'" in out
    assert "kept image 'ubuntu-24.04.qcow2' as an admin changed it: name 'Debian 12'" in out
    assert "skipped image 'alpine-3.20.qcow2': it was deleted" in out
    assert "kept host 'demo-host' as an admin changed it: name 'lab-1'" in out
    # what nobody changed is still the demo's, and a third run is the same
    assert Plan.objects.get(name="Small").monthly_price == Decimal("6.00")
    assert seed() == out


def test_a_value_the_admin_set_back_stays_the_admins():
    # given a plan the admin deactivated and then activated again
    seed()
    api = admin_api()
    nano = Plan.objects.get(name="Nano")
    patch(api, "plans", nano.pk, is_active=False)
    seed()
    patch(api, "plans", nano.pk, is_active=True, monthly_price="4.00")
    # when the seed runs: nothing to say about is_active (it is the demo's value again),
    # and the price stays the admin's
    out = seed()
    nano.refresh_from_db()
    assert (nano.is_active, nano.monthly_price) == (True, Decimal("4.00"))
    assert "kept plan 'Nano' as an admin changed it: monthly_price '4.00'" in out
    assert "is_active" not in out


def test_rows_the_seed_did_not_make_are_never_taken_over():
    # given an installation whose admin made a plan "Tiny" and an image "Debian 12" of
    # their own before the demo seed ever ran
    PlanFactory(name="Tiny", vcpus=4, memory_mib=4096, disk_gib=80, monthly_price="20.00")
    ImageFactory(name="Debian 12", volume_name="my-debian.qcow2")
    # when the seed runs (twice)
    seed()
    out = seed()
    # then the admin's rows are as they were, nothing collided, the rest of the demo is there
    tiny = Plan.objects.get(name="Tiny")
    assert (tiny.vcpus, tiny.monthly_price) == (4, Decimal("20.00"))
    assert Image.objects.get(name="Debian 12").volume_name == "my-debian.qcow2"
    assert not Image.objects.filter(volume_name="debian-12.qcow2").exists()
    assert set(Image.objects.values_list("name", flat=True)) == {
        "Debian 12",
        "Ubuntu 24.04",
        "Alpine 3.20",
    }
    assert Plan.objects.count() == 4
    assert "skipped plan 'Tiny': plan #" in out and "was not made by the seed" in out
    assert "skipped image 'debian-12.qcow2': image #" in out
    assert "already has the name 'Debian 12'" in out
