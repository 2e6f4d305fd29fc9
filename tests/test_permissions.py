"""Provider actions need the matching Django model permission and a staff session; a billing
token never changes the catalogue or hosts (issue 7 #3)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from hosting.choices import JobKind, TokenScope
from hosting.models import Host, Image, Job
from hosting.permissions import may_perform

from .conftest import token_client
from .factories import UserFactory

pytestmark = pytest.mark.django_db


def staff_user(username: str, *codenames: str):
    """A staff user (not a superuser) holding exactly these hosting permissions."""
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="hosting", codename__in=codenames)
    )
    return user


@pytest.fixture
def support(db):
    """A support user who may look at servers and hosts, nothing more."""
    return staff_user("support", "view_server", "view_host", "view_job")


def session(user, cls=APIClient):
    client = cls()
    client.force_login(user)
    return client


# --- the catalogue and hosts through the API ---------------------------------------------


def test_billing_token_cannot_change_the_catalogue(billing_client, plan, image):
    # given a billing token of a superuser
    # when it tries to make a plan free, delete an image or add plans, images and hosts
    resp = billing_client.patch(f"/api/v1/plans/{plan.pk}/", {"monthly_price": "0"}, format="json")
    assert resp.status_code == 403
    assert billing_client.delete(f"/api/v1/images/{image.pk}/").status_code == 403
    new_plan = {"name": "Free", "vcpus": 1, "memory_mib": 128, "disk_gib": 1}
    assert billing_client.post("/api/v1/plans/", new_plan, format="json").status_code == 403
    new_image = {"name": "X", "volume_name": "x.qcow2"}
    assert billing_client.post("/api/v1/images/", new_image, format="json").status_code == 403
    new_host = {"name": "hv", "libvirt_uri": "test:///default?x=1"}
    assert billing_client.post("/api/v1/hosts/", new_host, format="json").status_code == 403
    # then nothing changed, and it still reads the catalogue
    plan.refresh_from_db()
    assert plan.monthly_price == Decimal("5.00")
    assert Image.objects.filter(pk=image.pk).exists() and not Host.objects.exists()
    assert billing_client.get("/api/v1/plans/").status_code == 200


def test_staff_session_needs_the_model_permission_for_catalogue_writes(plan):
    # given a staff user without and one with "change plan"
    plain = session(staff_user("plain"))
    pricing = session(staff_user("pricing", "change_plan"))
    # then only the second may change a price, and neither may add or delete
    url = f"/api/v1/plans/{plan.pk}/"
    assert plain.patch(url, {"monthly_price": "0"}, format="json").status_code == 403
    assert pricing.patch(url, {"monthly_price": "7.50"}, format="json").status_code == 200
    assert pricing.delete(url).status_code == 403
    plan.refresh_from_db()
    assert plan.monthly_price == Decimal("7.50")


def test_support_user_cannot_act_on_servers_or_hosts_through_the_api(support, server, host):
    client = session(support)
    # reads are allowed
    assert client.get(f"/api/v1/servers/{server.uuid}/").status_code == 200
    assert client.get("/api/v1/hosts/").status_code == 200
    # power actions, suspension, termination, host creation and refresh are not
    for action in ("stop", "force-stop", "reboot", "suspend"):
        assert client.post(f"/api/v1/servers/{server.uuid}/{action}/").status_code == 403
    assert client.delete(f"/api/v1/servers/{server.uuid}/").status_code == 403
    new_host = {"name": "hv", "libvirt_uri": "test:///default?x=2"}
    assert client.post("/api/v1/hosts/", new_host, format="json").status_code == 403
    assert client.post(f"/api/v1/hosts/{host.pk}/refresh/").status_code == 403
    assert not Job.objects.exists() and Host.objects.count() == 1


def test_staff_without_view_host_cannot_list_hosts(host):
    assert session(staff_user("nohosts")).get("/api/v1/hosts/").status_code == 403


def test_each_permission_allows_its_own_action(server, host):
    client = session(staff_user("operator", "view_server", "power_server", "refresh_host"))
    assert client.post(f"/api/v1/servers/{server.uuid}/stop/").status_code == 202
    assert client.post(f"/api/v1/hosts/{host.pk}/refresh/").status_code == 202
    # but not the ones it was not given
    assert client.post(f"/api/v1/servers/{server.uuid}/suspend/").status_code == 403
    assert client.delete(f"/api/v1/servers/{server.uuid}/").status_code == 403
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["host_refresh", "stop"]


def test_billing_token_never_exceeds_its_holders_permissions(server):
    # given a billing token of a staff user who may power servers but not terminate them
    holder = staff_user("billing-bot", "view_server", "power_server")
    client = token_client(holder, TokenScope.BILLING)
    # then it may stop, and may not terminate or suspend
    assert client.post(f"/api/v1/servers/{server.uuid}/stop/").status_code == 202
    assert client.delete(f"/api/v1/servers/{server.uuid}/").status_code == 403
    assert client.post(f"/api/v1/servers/{server.uuid}/suspend/").status_code == 403


def test_customers_act_on_their_own_servers_without_model_permissions(owner_client, server):
    assert owner_client.post(f"/api/v1/servers/{server.uuid}/stop/").status_code == 202


# --- the admin ---------------------------------------------------------------------------


def offered_actions(changelist) -> set[str]:
    form = changelist.context["action_form"]  # None when no action is offered
    return set() if form is None else {name for name, _ in form.fields["action"].choices} - {""}


def test_support_user_sees_no_server_actions_in_the_admin(support, server):
    client = session(support, Client)
    url = reverse("admin:hosting_server_changelist")
    # the changelist opens, without the actions the user may not take
    resp = client.get(url)
    assert resp.status_code == 200
    assert offered_actions(resp) == set()
    # and posting one anyway does nothing
    for action in ("action_terminate", "action_stop", "action_force_stop"):
        client.post(url, {"action": action, "_selected_action": [server.pk]})
    assert not Job.objects.exists()


def test_support_user_cannot_add_or_refresh_hosts_in_the_admin(support, host):
    client = session(support, Client)
    assert client.get(reverse("admin:hosting_host_add")).status_code == 403
    client.post(
        reverse("admin:hosting_host_changelist"),
        {"action": "refresh_from_hypervisor", "_selected_action": [host.pk]},
    )
    assert not Job.objects.exists()


def test_admin_actions_are_offered_with_the_permission(server):
    client = session(staff_user("operator", "view_server", "terminate_server"), Client)
    url = reverse("admin:hosting_server_changelist")
    assert offered_actions(client.get(url)) == {"action_terminate"}
    client.post(url, {"action": "action_terminate", "_selected_action": [server.pk]})
    assert Job.objects.get().kind == JobKind.TERMINATE


# --- the panel ---------------------------------------------------------------------------


def test_support_user_cannot_use_power_buttons_in_the_panel(support, server):
    client = session(support, Client)
    page = client.get(reverse("dashboard:server-detail", kwargs={"uuid": server.uuid}))
    assert page.status_code == 200
    assert page.context["buttons"] == [] and page.context["terminate"] is None
    for slug in ("stop", "terminate", "suspend"):
        url = reverse("dashboard:server-action", kwargs={"uuid": server.uuid, "action": slug})
        assert client.post(url).status_code == 403
    assert not Job.objects.exists()


# --- the rule itself, for the action registry ---------------------------------------------


def test_may_perform(owner, support, staff):
    assert may_perform(owner, JobKind.STOP) and not may_perform(owner, JobKind.SUSPEND)
    assert not may_perform(support, JobKind.STOP)
    assert not may_perform(support, JobKind.HOST_REFRESH)
    assert all(may_perform(staff, kind) for kind in JobKind.values)
    owner.is_active = False
    assert not may_perform(owner, JobKind.STOP)
    assert not may_perform(None, JobKind.STOP)


def test_staff_cannot_issue_a_token_for_a_more_powerful_user(staff, client):
    # given a staff user who may add tokens, but is no superuser
    clerk = staff_user("clerk", "add_apitoken", "view_apitoken")
    client.force_login(clerk)
    # when they issue a billing token for the superuser in the admin
    resp = client.post(
        reverse("admin:hosting_apitoken_add"),
        {"user": staff.pk, "scope": TokenScope.BILLING, "name": "mine now"},
    )
    # then it is refused, and no token exists
    assert resp.status_code == 200
    assert "Only a superuser" in str(resp.context["adminform"].form.errors)
    from hosting.models import APIToken

    assert not APIToken.objects.exists()
