"""Reconciliation of hosts and database, against libvirt's test driver."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from hosting.backends import get_backend
from hosting.choices import HostState, JobKind, ServerState
from hosting.models import AuditEvent, Job, Server
from hosting.services.operations import guest_spec
from hosting.services.reconcile import reconcile_host

from .factories import HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rhost():
    # a host of its own: the test driver's domains are shared by every host in the process
    return HostFactory(libvirt_uri=f"test:///default?reconcile={uuid.uuid4()}")


def make_server(customer, plan, image, host, state, *, define=True, run=False):
    server = Server.objects.create(
        customer=customer,
        plan=plan,
        image=image,
        host=host,
        hostname="r1",
        state=state,
        mac_address=f"52:54:00:{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:2]}:01",
    )
    if define:
        backend = get_backend(host)
        backend.define(guest_spec(server))
        if run:
            backend.start(server.domain_name)
    return server


def test_state_drift_is_fixed_from_the_hypervisor(customer, plan, image, rhost):
    # given a server the database thinks is stopped while libvirt runs it
    server = make_server(customer, plan, image, rhost, ServerState.STOPPED, run=True)
    # when the host is reconciled
    report = reconcile_host(host=rhost)
    # then the server is running, and the change is audited
    server.refresh_from_db()
    assert server.state == ServerState.RUNNING
    assert ("r1", "stopped", "running") in report.fixed
    event = AuditEvent.objects.get(action="server.reconcile")
    assert event.details["from"] == "stopped" and event.details["to"] == "running"
    # and a second pass changes nothing
    assert reconcile_host(host=rhost).fixed == []


def test_missing_domain_flags_the_server(customer, plan, image, rhost):
    server = make_server(customer, plan, image, rhost, ServerState.RUNNING, define=False)
    report = reconcile_host(host=rhost)
    server.refresh_from_db()
    assert server.state == ServerState.ERROR
    assert "missing" in server.state_message
    assert report.missing == ["r1"]


def test_unknown_domains_are_reported_never_deleted(customer, plan, image, rhost):
    conn = libvirt.open(rhost.libvirt_uri)
    stray = f"stray-{uuid.uuid4()}"
    conn.defineXML(
        f"<domain type='test'><name>{stray}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    server = make_server(customer, plan, image, rhost, ServerState.STOPPED)
    report = reconcile_host(host=rhost)
    rhost.refresh_from_db()
    assert stray in report.unknown_domains and stray in rhost.unknown_domains
    assert server.domain_name not in rhost.unknown_domains
    assert stray in [d.name() for d in conn.listAllDomains()]
    assert rhost.last_reconciled_at is not None
    conn.lookupByName(stray).undefine()


def test_suspended_server_that_is_off_stays_suspended(customer, plan, image, rhost):
    server = make_server(customer, plan, image, rhost, ServerState.STOPPED)
    Server.objects.filter(pk=server.pk).update(suspended=True)
    assert reconcile_host(host=rhost).fixed == []
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED and server.suspended


def test_an_outage_never_lifts_the_suspension(customer, plan, image, rhost, owner_client):
    """Issue 7 #6: suspended -> host unreachable -> back: still suspended, customer locked."""
    server = make_server(customer, plan, image, rhost, ServerState.STOPPED)
    Server.objects.filter(pk=server.pk).update(suspended=True)
    good_uri = rhost.libvirt_uri
    # the host goes away: its servers become unknown, the flag stays
    type(rhost).objects.filter(pk=rhost.pk).update(libvirt_uri="qemu+tcp://127.0.0.1:1/system")
    rhost.refresh_from_db()
    assert reconcile_host(host=rhost).reachable is False
    server.refresh_from_db()
    assert server.state == ServerState.UNKNOWN and server.suspended
    # it comes back: the power state is the hypervisor's, the suspension the provider's
    type(rhost).objects.filter(pk=rhost.pk).update(libvirt_uri=good_uri)
    rhost.refresh_from_db()
    reconcile_host(host=rhost)
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED and server.suspended
    # and the customer still cannot start it
    resp = owner_client.post(f"/api/v1/servers/{server.uuid}/start/")
    assert resp.status_code == 409
    assert "suspended" in resp.json()["error"]["message"]


def test_server_with_a_job_in_progress_is_left_alone(customer, plan, image, rhost):
    server = make_server(customer, plan, image, rhost, ServerState.STOPPED, run=True)
    Job.objects.create(kind=JobKind.START, server=server, status="running")
    reconcile_host(host=rhost)
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED


def test_unreachable_host_goes_offline_and_comes_back(customer, plan, image, rhost):
    server = make_server(customer, plan, image, rhost, ServerState.RUNNING, run=True)
    good_uri = rhost.libvirt_uri
    rhost.libvirt_uri = "qemu+tcp://127.0.0.1:1/system"
    rhost.save()
    report = reconcile_host(host=rhost)
    rhost.refresh_from_db()
    server.refresh_from_db()
    assert not report.reachable
    assert rhost.state == HostState.OFFLINE and "cannot reach" in rhost.last_error
    assert server.state == ServerState.UNKNOWN
    assert AuditEvent.objects.filter(action="host.offline").exists()
    # the host answers again: it is online and the server takes the state libvirt reports
    rhost.libvirt_uri = good_uri
    rhost.save()
    reconcile_host(host=rhost)
    rhost.refresh_from_db()
    server.refresh_from_db()
    assert rhost.state == HostState.ONLINE and rhost.last_error == ""
    assert server.state == ServerState.RUNNING
