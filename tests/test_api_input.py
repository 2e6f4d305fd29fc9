"""What the API takes (issue 7 #14): a body too large gets the JSON error shape, a field an
endpoint does not take is a 400 naming it, and names refuse control characters and
unassigned code points (API, panel forms and models alike)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from hosting.models import Customer, Job, Plan, Server, SSHKey
from hosting.validators import validate_name

from .factories import PlanFactory, make_public_key

pytestmark = pytest.mark.django_db

BAD_NAMES = [
    "evil\nname",  # a control character (a newline in a log line or a CSV export)
    "bell\x07",
    "right\u202eto-left",  # a bidirectional override
    "unassigned\U000e0fff",  # an unassigned code point
    "private\ue000",  # a private-use character
]


@pytest.fixture
def catalogue_client(staff):
    """A staff session: the catalogue is edited by staff with model permissions only."""
    client = APIClient()
    client.force_login(staff)
    return client


def order(plan, image, **extra) -> dict:
    return {"plan": plan.pk, "image": image.pk, "hostname": "web-2", **extra}


@pytest.mark.parametrize("path", ["/api/v1/servers/", "/api/v1/customers/"])
def test_too_large_body_gets_the_json_error_shape(billing_client, path):
    # given a body over the upload limit (2.5 MB by default)
    body = json.dumps({"name": "x" * 3_000_000})
    # when it is posted; then the answer is the API's 413 error, in JSON
    resp = billing_client.post(path, body, content_type="application/json")
    assert resp.status_code == 413
    assert resp["Content-Type"] == "application/json"
    error = resp.json()["error"]
    assert error["status"] == 413 and error["code"] == "too_large"
    assert not Customer.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_body_limit_follows_the_setting(billing_client):
    resp = billing_client.post(
        "/api/v1/customers/", {"name": "A" * 200, "email": "a@b.example"}, format="json"
    )
    assert resp.status_code == 413


def test_unknown_path_under_the_api_is_a_json_404(billing_client):
    resp = billing_client.get("/api/v1/no-such-thing/")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "extra", [{"host": 1}, {"ip": "192.0.2.50"}, {"host": 1, "ip": "192.0.2.50"}]
)
def test_order_with_a_field_it_does_not_take_is_400_naming_it(
    owner_client, plan, image, host, pool, extra
):
    # when a customer orders a server and names a host or an address
    resp = owner_client.post("/api/v1/servers/", order(plan, image, **extra), format="json")
    # then the order is refused, naming each field, and nothing is created
    assert resp.status_code == 400
    assert set(resp.json()["error"]["fields"]) == set(extra)
    assert not Server.objects.exists() and not Job.objects.exists()


def test_read_only_and_nested_unknown_fields_are_refused(billing_client):
    resp = billing_client.post(
        "/api/v1/customers/",
        {
            "name": "Hooli",
            "email": "it@hooli.example",
            "status": "suspended",
            "owner": {"username": "gavin", "password": "middle-out-2026", "is_staff": True},
        },
        format="json",
    )
    assert resp.status_code == 400
    fields = resp.json()["error"]["fields"]
    assert "status" in fields
    assert "is_staff" in fields["owner"]
    assert not Customer.objects.exists()


def test_values_of_another_json_type_are_refused(catalogue_client):
    # DRF would coerce 2 to "2" and "yes" to True; the schema says string and boolean
    resp = catalogue_client.post(
        "/api/v1/plans/",
        {"name": 2, "vcpus": "1", "memory_mib": 256, "disk_gib": 10, "is_active": "yes"},
        format="json",
    )
    assert resp.status_code == 400
    assert set(resp.json()["error"]["fields"]) == {"name", "vcpus", "is_active"}
    assert not Plan.objects.exists()


def test_a_valid_order_still_works(owner_client, plan, image, host, pool):
    resp = owner_client.post("/api/v1/servers/", order(plan, image), format="json")
    assert resp.status_code == 202


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_refuse_control_and_unassigned_characters_in_the_api(
    billing_client, catalogue_client, owner_client, name
):
    plan = catalogue_client.post(
        "/api/v1/plans/", {"name": name, "vcpus": 1, "memory_mib": 256, "disk_gib": 10}, "json"
    )
    image = catalogue_client.post(
        "/api/v1/images/", {"name": name, "volume_name": "v.qcow2"}, format="json"
    )
    customer = billing_client.post(
        "/api/v1/customers/", {"name": name, "email": "a@b.example"}, format="json"
    )
    key = owner_client.post(
        "/api/v1/ssh-keys/", {"name": name, "public_key": make_public_key(3)}, format="json"
    )
    for resp in (plan, image, customer, key):
        assert resp.status_code == 400, resp.json()
        assert "name" in resp.json()["error"]["fields"]
    assert not SSHKey.objects.exists()


def test_ordinary_names_in_any_script_are_fine(catalogue_client):
    for name in ["Zürich Small", "東京 2 GB", "Ünïcødé — plan ✓", "plan 🚀"]:
        resp = catalogue_client.post(
            "/api/v1/plans/",
            {"name": name, "vcpus": 1, "memory_mib": 256, "disk_gib": 10},
            format="json",
        )
        assert resp.status_code == 201, resp.json()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_name_validator_is_on_the_models(name):
    with pytest.raises(ValidationError):
        validate_name(name)
    plan = PlanFactory.build(name=name)
    with pytest.raises(ValidationError) as info:
        plan.full_clean()
    assert "name" in info.value.message_dict


def test_panel_forms_refuse_control_characters_in_names(client, owner, customer):
    client.force_login(owner)
    resp = client.post(
        reverse("dashboard:key-list"),
        {"name": "lap\u202etop", "public_key": make_public_key(4)},
    )
    assert resp.status_code == 400
    assert not SSHKey.objects.exists()
    resp = client.post(reverse("dashboard:token-list"), {"name": "dep\x07loy", "scope": "read"})
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "query",
    ["page_size=null", "page_size=0", "page_size=1001", "is_active=null", "is_active=yes"],
)
def test_query_parameters_of_another_type_are_400(billing_client, query):
    # django-filter and DRF would ignore these and answer the unfiltered first page
    resp = billing_client.get(f"/api/v1/plans/?{query}")
    assert resp.status_code == 400
    assert query.split("=")[0] in resp.json()["error"]["fields"]


def test_empty_id_filter_is_400_not_everything(billing_client):
    resp = billing_client.get("/api/v1/jobs/?server=")
    assert resp.status_code == 400
    assert "server" in resp.json()["error"]["fields"]


def test_duplicate_name_is_a_409_with_the_field(catalogue_client):
    PlanFactory(name="Small")
    resp = catalogue_client.post(
        "/api/v1/plans/",
        {"name": "Small", "vcpus": 1, "memory_mib": 256, "disk_gib": 10},
        format="json",
    )
    assert resp.status_code == 409
    assert "name" in resp.json()["error"]["fields"]
