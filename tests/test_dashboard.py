"""The browser panel's views: tenancy, forms with inline errors, actions through services."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hosting.choices import JobKind, JobStatus, ServerState, TokenScope
from hosting.models import APIToken, AuditEvent, Job, Server, SSHKey

from .factories import (
    HostFactory,
    JobFactory,
    PlanFactory,
    ServerFactory,
    SSHKeyFactory,
    make_public_key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def other_browser(client, other_owner):
    client.force_login(other_owner)
    return client


@pytest.fixture
def staff_browser(client, staff):
    client.force_login(staff)
    return client


def detail_url(server: Server) -> str:
    return reverse("dashboard:server-detail", kwargs={"uuid": server.uuid})


def action_url(server: Server, action: str) -> str:
    return reverse("dashboard:server-action", kwargs={"uuid": server.uuid, "action": action})


# --- log-in ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["server-list", "server-create", "key-list", "token-list"],
)
def test_pages_require_login(client, name):
    # given an anonymous visitor, when they open a panel page
    resp = client.get(reverse(f"dashboard:{name}"))
    # then they are sent to the log-in page
    assert resp.status_code == 302
    assert resp["Location"].startswith(reverse("login"))


def test_login_page_logs_in_and_lands_on_servers(client, owner):
    assert client.get(reverse("login")).status_code == 200
    resp = client.post(
        reverse("login"), {"username": "acme-owner", "password": "correct-horse-battery"}
    )
    assert resp.status_code == 302
    assert resp["Location"] == reverse("dashboard:server-list")


def test_logout_is_a_post(browser):
    resp = browser.post(reverse("logout"))
    assert resp.status_code == 302
    assert browser.get(reverse("dashboard:server-list")).status_code == 302


# --- servers --------------------------------------------------------------------------


def test_server_list_shows_own_servers_with_state_badges(browser, server, other_customer):
    # given a server of mine and one of another customer
    ServerFactory(customer=other_customer, hostname="globex-db", state=ServerState.STOPPED)
    # when I open the list
    resp = browser.get(reverse("dashboard:server-list"))
    # then I see mine with its state badge, and not theirs
    body = resp.content.decode()
    assert resp.status_code == 200
    assert "web-1" in body
    assert 'data-state="running"' in body
    assert "globex-db" not in body


def test_server_list_filters_by_state_and_name(browser, customer):
    ServerFactory(customer=customer, hostname="alpha", state=ServerState.RUNNING)
    ServerFactory(customer=customer, hostname="beta", state=ServerState.STOPPED)
    body = browser.get(reverse("dashboard:server-list"), {"state": "stopped"}).content.decode()
    assert "beta" in body and "alpha" not in body
    body = browser.get(reverse("dashboard:server-list"), {"q": "alp"}).content.decode()
    assert "alpha" in body and "beta" not in body


def test_server_list_htmx_returns_only_the_table(browser, server):
    resp = browser.get(reverse("dashboard:server-list"), headers={"HX-Request": "true"})
    body = resp.content.decode()
    assert 'id="server-table"' in body
    assert "<nav" not in body


def test_server_list_hides_terminated_servers(browser, customer):
    ServerFactory(customer=customer, hostname="gone", state=ServerState.TERMINATED)
    assert "gone" not in browser.get(reverse("dashboard:server-list")).content.decode()


def test_server_list_query_count_does_not_grow(browser, customer, plan, image, host):
    ServerFactory(customer=customer, plan=plan, image=image, host=host)
    with CaptureQueriesContext(connection) as one:
        browser.get(reverse("dashboard:server-list"))
    for _ in range(10):
        ServerFactory(customer=customer, plan=plan, image=image, host=host)
    with CaptureQueriesContext(connection) as eleven:
        browser.get(reverse("dashboard:server-list"))
    assert len(eleven) == len(one)


def test_other_customers_server_is_404(other_browser, server):
    # given a server of Acme, when Globex's owner asks for it in any way, then 404
    resp = other_browser.get(detail_url(server))
    assert resp.status_code == 404
    assert "web-1" not in resp.content.decode()
    live = reverse("dashboard:server-live", kwargs={"uuid": server.uuid})
    assert other_browser.get(live).status_code == 404
    assert other_browser.post(action_url(server, "stop")).status_code == 404
    assert not Job.objects.exists()


def test_server_page_shows_addresses_jobs_and_legal_buttons(browser, server):
    JobFactory(server=server, status=JobStatus.SUCCEEDED, progress=100, message="Running")
    body = browser.get(detail_url(server)).content.decode()
    # running: stop, reboot and force stop are offered; start and staff actions are not
    assert 'data-action="stop"' in body
    assert 'data-action="reboot"' in body
    assert 'data-action="force-stop"' in body
    assert 'data-action="start"' not in body
    assert 'data-action="suspend"' not in body
    assert "Succeeded" in body
    assert f'data-ws-path="/ws/servers/{server.uuid}/"' in body


def test_stopped_server_offers_start(browser, server):
    Server.objects.filter(pk=server.pk).update(state=ServerState.STOPPED)
    body = browser.get(detail_url(server)).content.decode()
    assert 'data-action="start"' in body
    assert 'data-action="stop"' not in body


def test_active_job_shows_progress_and_disables_buttons(browser, server):
    job = JobFactory(
        server=server,
        kind=JobKind.REBOOT,
        status=JobStatus.RUNNING,
        progress=40,
        message="Rebooting",
    )
    body = browser.get(detail_url(server)).content.decode()
    assert f'data-job-id="{job.pk}"' in body
    assert 'aria-valuenow="40"' in body
    assert "Rebooting" in body
    assert "disabled" in body


def test_staff_sees_suspend(staff_browser, server):
    body = staff_browser.get(detail_url(server)).content.decode()
    assert 'data-action="suspend"' in body


def test_power_action_post_creates_job_and_audit(browser, server, owner):
    # given my running server, when I press Stop
    resp = browser.post(action_url(server, "stop"))
    # then I am sent back to the server page and a stop job is queued, audited as me
    assert resp.status_code == 302
    assert resp["Location"] == detail_url(server)
    job = Job.objects.get(server=server)
    assert job.kind == JobKind.STOP
    assert job.status == JobStatus.QUEUED
    assert job.requested_by == owner
    event = AuditEvent.objects.get(action="server.stop")
    assert event.actor == owner and event.target_id == str(server.pk)


def test_power_action_is_post_only(browser, server):
    assert browser.get(action_url(server, "stop")).status_code == 405
    assert not Job.objects.exists()


def test_power_action_needs_csrf(client, owner, server):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(action_url(server, "stop")).status_code == 403
    assert not Job.objects.exists()


def test_illegal_action_shows_message_and_creates_nothing(browser, server):
    resp = browser.post(action_url(server, "start"), follow=True)
    assert resp.status_code == 200
    assert "Cannot start a server that is running." in resp.content.decode()
    assert not Job.objects.exists()


def test_second_action_while_busy_is_refused(browser, server):
    JobFactory(server=server, kind=JobKind.REBOOT, status=JobStatus.RUNNING)
    resp = browser.post(action_url(server, "stop"), follow=True)
    assert "already has a job in progress" in resp.content.decode()
    assert Job.objects.count() == 1


def test_customer_cannot_suspend(browser, server):
    resp = browser.post(action_url(server, "suspend"))
    assert resp.status_code == 403
    assert "Only the provider can suspend a server." in resp.content.decode()
    assert not Job.objects.exists()


def test_suspended_server_page_offers_the_customer_nothing(browser, server, staff):
    from django.test import Client

    Server.objects.filter(pk=server.pk).update(suspended=True, state=ServerState.STOPPED)
    page = browser.get(detail_url(server)).content.decode()
    assert 'data-role="suspended"' in page and 'data-state="suspended"' in page
    assert "data-action=" not in page  # no start, no terminate
    resp = browser.post(action_url(server, "start"), follow=True)
    assert "This server is suspended by the provider." in resp.content.decode()
    assert not Job.objects.exists()
    # staff see unsuspend (and not suspend)
    staff_browser = Client()
    staff_browser.force_login(staff)
    staff_page = staff_browser.get(detail_url(server)).content.decode()
    assert 'data-action="unsuspend"' in staff_page
    assert 'data-action="suspend"' not in staff_page


def test_unknown_action_is_404(browser, server):
    assert browser.post(action_url(server, "explode")).status_code == 404


def test_htmx_action_returns_live_part_with_message(browser, server):
    resp = browser.post(action_url(server, "reboot"), headers={"HX-Request": "true"})
    body = resp.content.decode()
    assert resp.status_code == 200
    assert body.lstrip().startswith('<div id="server-live"')
    assert 'hx-swap-oob="true"' in body
    assert "Reboot: requested" in body
    assert Job.objects.get().kind == JobKind.REBOOT


# --- create ---------------------------------------------------------------------------


def test_create_form_lists_catalogue_and_my_keys(browser, customer, other_customer, plan, image):
    SSHKeyFactory(customer=customer, name="my-laptop")
    SSHKeyFactory(customer=other_customer, name="their-laptop")
    body = browser.get(reverse("dashboard:server-create")).content.decode()
    assert plan.name in body and image.name in body
    assert "my-laptop" in body
    assert "their-laptop" not in body
    # one customer: no customer field to choose from
    assert 'name="customer"' not in body


def test_create_shows_field_errors_inline(browser, plan, image, host, pool):
    # given a bad host name, when I submit the form
    resp = browser.post(
        reverse("dashboard:server-create"),
        {"hostname": "-bad_name-", "plan": plan.pk, "image": image.pk},
    )
    # then the form comes back with the error under the field, and nothing was created
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "is-invalid" in body
    assert "Use letters, digits and hyphens" in body
    assert not Server.objects.exists()


def test_create_requires_a_plan(browser, image, host, pool):
    resp = browser.post(reverse("dashboard:server-create"), {"hostname": "ok", "image": image.pk})
    assert resp.status_code == 400
    assert 'data-field="plan"' in resp.content.decode()


def test_create_shows_no_capacity_inline(browser, image, host, pool):
    # given a plan larger than any host
    huge = PlanFactory(name="Huge", vcpus=1, memory_mib=1024 * 1024, disk_gib=10)
    resp = browser.post(
        reverse("dashboard:server-create"),
        {"hostname": "big", "plan": huge.pk, "image": image.pk},
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "No online virtual machine host has room for plan Huge" in body
    assert not Server.objects.exists()


def test_create_rejects_another_customers_key(browser, other_customer, plan, image, host, pool):
    theirs = SSHKeyFactory(customer=other_customer)
    resp = browser.post(
        reverse("dashboard:server-create"),
        {"hostname": "web", "plan": plan.pk, "image": image.pk, "ssh_keys": [theirs.pk]},
    )
    assert resp.status_code == 400
    assert not Server.objects.exists()


def test_create_server_queues_provisioning(browser, customer, owner, plan, image, host, pool):
    key = SSHKeyFactory(customer=customer)
    resp = browser.post(
        reverse("dashboard:server-create"),
        {"hostname": "web-2", "plan": plan.pk, "image": image.pk, "ssh_keys": [key.pk]},
    )
    server = Server.objects.get()
    assert resp.status_code == 302
    assert resp["Location"] == detail_url(server)
    assert server.customer == customer and list(server.ssh_keys.all()) == [key]
    job = server.jobs.get()
    assert job.kind == JobKind.PROVISION and job.requested_by == owner
    assert AuditEvent.objects.filter(action="server.create", actor=owner).exists()
    # the page that follows shows the queued job's progress bar
    body = browser.get(resp["Location"]).content.decode()
    assert f'data-active-job="{job.pk}"' in body


def test_staff_with_many_customers_picks_one(staff_browser, customer, other_customer, plan):
    body = staff_browser.get(reverse("dashboard:server-create")).content.decode()
    assert 'name="customer"' in body
    assert "Acme" in body and "Globex" in body


# --- SSH keys -------------------------------------------------------------------------


def test_add_ssh_key_shows_validation_inline(browser):
    resp = browser.post(
        reverse("dashboard:key-list"), {"name": "broken", "public_key": "ssh-ed25519 !!!"}
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "is-invalid" in body
    assert "not valid base64" in body
    assert not SSHKey.objects.exists()


def test_add_duplicate_ssh_key_shows_error(browser, customer):
    SSHKeyFactory(customer=customer, name="laptop", public_key=make_public_key(7))
    resp = browser.post(
        reverse("dashboard:key-list"), {"name": "again", "public_key": make_public_key(7)}
    )
    assert resp.status_code == 400
    assert "already saved" in resp.content.decode()


def test_add_and_delete_ssh_key(browser, customer):
    resp = browser.post(
        reverse("dashboard:key-list"), {"name": "laptop", "public_key": make_public_key(3)}
    )
    assert resp.status_code == 302
    key = SSHKey.objects.get(customer=customer)
    assert key.fingerprint.startswith("SHA256:")
    assert "laptop" in browser.get(reverse("dashboard:key-list")).content.decode()
    resp = browser.post(reverse("dashboard:key-delete", kwargs={"pk": key.pk}))
    assert resp.status_code == 302
    assert not SSHKey.objects.exists()
    assert AuditEvent.objects.filter(action="sshkey.delete").exists()


def test_other_customers_key_cannot_be_seen_or_deleted(browser, other_customer):
    theirs = SSHKeyFactory(customer=other_customer, name="globex-key")
    assert "globex-key" not in browser.get(reverse("dashboard:key-list")).content.decode()
    resp = browser.post(reverse("dashboard:key-delete", kwargs={"pk": theirs.pk}))
    assert resp.status_code == 404
    assert SSHKey.objects.filter(pk=theirs.pk).exists()


# --- API tokens -----------------------------------------------------------------------


def test_token_is_shown_once_and_stored_hashed(browser, owner, customer):
    # when I create a token
    resp = browser.post(
        reverse("dashboard:token-list"), {"name": "deploy", "scope": TokenScope.CUSTOMER}
    )
    # then its key is in this response
    assert resp.status_code == 200
    key = resp.context["new_key"]
    assert key.startswith("pdk_") and key in resp.content.decode()
    # and stored only as a digest
    token = APIToken.objects.get()
    assert token.user == owner and token.customer == customer
    assert token.scope == TokenScope.CUSTOMER
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {token.digest, token.prefix, token.name}
    # and never shown again
    again = browser.get(reverse("dashboard:token-list")).content.decode()
    assert key not in again
    assert "deploy" in again and f"pdk_{token.prefix}_" in again
    assert AuditEvent.objects.filter(action="token.create").exists()


def test_created_token_works_against_the_api(browser, server):
    resp = browser.post(reverse("dashboard:token-list"), {"scope": TokenScope.READ})
    key = resp.context["new_key"]
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get(f"/api/v1/servers/{server.uuid}/").status_code == 200
    assert api.post(f"/api/v1/servers/{server.uuid}/stop/").status_code == 403


def test_token_with_past_expiry_choice_is_rejected(browser):
    resp = browser.post(
        reverse("dashboard:token-list"), {"scope": TokenScope.READ, "expires_in": "7"}
    )
    assert resp.status_code == 400
    assert not APIToken.objects.exists()


def test_revoke_token(browser, owner):
    browser.post(reverse("dashboard:token-list"), {"scope": TokenScope.READ, "name": "ci"})
    token = APIToken.objects.get()
    resp = browser.post(reverse("dashboard:token-revoke", kwargs={"pk": token.pk}))
    assert resp.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None and not token.is_usable
    assert "revoked" in browser.get(reverse("dashboard:token-list")).content.decode()


def test_cannot_revoke_someone_elses_token(client, owner, other_owner, other_customer):
    from hosting.services.tokens import issue_token

    theirs, _ = issue_token(user=other_owner, scope=TokenScope.READ, customer=other_customer)
    client.force_login(owner)
    resp = client.post(reverse("dashboard:token-revoke", kwargs={"pk": theirs.pk}))
    assert resp.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# --- operations -----------------------------------------------------------------------


def test_ops_page_is_staff_only(browser):
    resp = browser.get(reverse("dashboard:ops"))
    assert resp.status_code == 302
    assert "/admin/login/" in resp["Location"]


def test_ops_page_shows_capacity_jobs_and_failures(staff_browser, server, host):
    HostFactory(name="empty-host")
    JobFactory(
        server=server,
        kind=JobKind.START,
        status=JobStatus.FAILED,
        error="libvirt said no",
    )
    resp = staff_browser.get(reverse("dashboard:ops"))
    body = resp.content.decode()
    assert resp.status_code == 200
    assert host.name in body and "empty-host" in body
    # 1 vCPU used of 16 CPUs x 4.00 overcommit
    assert '1 <span class="text-body-secondary">of 64</span>' in body
    assert "libvirt said no" in body


# --- serial console -----------------------------------------------------------------------


def test_server_page_follows_the_console_on_its_socket(browser, server):
    """No polling: the console box is filled by the page's socket (tests/test_websocket.py,
    and the browser test)."""
    body = browser.get(detail_url(server)).content.decode()
    assert f'id="console-tail" class="console-tail" data-server="{server.uuid}"' in body
    assert "every 3s" not in body.split('id="console-tail"')[1].split("</div>")[0]


def test_ops_overview_shows_reconciliation_drift(staff_browser, host):
    host.unknown_domains = ["stray-vm", "old-test"]
    host.save()
    body = staff_browser.get(reverse("dashboard:ops")).content.decode()
    assert "2 unknown domains" in body and "stray-vm, old-test" in body


# --- live stats (issue 8) -------------------------------------------------------------


def test_fleet_page_is_staff_only(browser):
    resp = browser.get(reverse("dashboard:fleet"))
    assert resp.status_code == 302
    assert "/admin/login/" in resp["Location"]


def test_fleet_page_lists_every_host_for_the_fleet_socket(staff_browser, server, host):
    HostFactory(name="empty-host")
    resp = staff_browser.get(reverse("dashboard:fleet"))
    body = resp.content.decode()
    assert resp.status_code == 200
    assert 'data-ws-path="/ws/fleet/"' in body
    assert f'data-host-id="{host.pk}"' in body and "empty-host" in body
    assert 'data-overload-pct="85"' in body


def test_server_page_has_the_charts_and_no_inline_script(browser, server):
    body = browser.get(detail_url(server)).content.decode()
    assert 'id="server-charts"' in body
    assert f'data-history-url="/api/v1/servers/{server.uuid}/stats/"' in body
    for chart in ("cpu", "memory", "disk", "network"):
        assert f'data-chart="{chart}"' in body
    assert "vendor/uplot/uPlot.iife.min.js" in body and "charts.js" in body
    assert "<script>" not in body
