"""Models, the state machine and the services that need no worker."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from hosting.access import Caller
from hosting.actions import ACTIONS, BY_KIND, IllegalAction, refusal
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.models import IPPool, Job, Server, SSHKey
from hosting.services import ipam
from hosting.services.errors import Conflict
from hosting.services.servers import create_server, request_action
from hosting.states import TRANSITIONS, can_transition

from .factories import IPPoolFactory, make_public_key


def test_every_state_has_transitions_and_terminated_is_final():
    assert set(TRANSITIONS) == set(ServerState.values)
    assert TRANSITIONS[ServerState.TERMINATED] == frozenset()
    for targets in TRANSITIONS.values():
        assert targets <= set(ServerState.values)


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        ("pending", "provisioning", True),
        ("provisioning", "running", True),
        ("running", "stopped", True),
        ("stopped", "running", True),
        ("terminating", "terminated", True),
        ("terminated", "running", False),
        ("pending", "running", False),
        ("stopped", "paused", False),
    ],
)
def test_transitions(current, target, ok):
    assert can_transition(current, target) is ok


def test_actions_need_the_right_state():
    start = BY_KIND[JobKind.START]
    assert refusal(start, state="stopped", suspended=False, provider=False) is None
    assert refusal(start, state="running", suspended=False, provider=False) == (
        "Cannot start a server that is running."
    )
    assert refusal(BY_KIND[JobKind.TERMINATE], state="terminated", suspended=False, provider=True)
    assert all(a.from_states <= set(ServerState.values) for a in ACTIONS)


def test_suspension_rules():
    start, suspend, unsuspend = (BY_KIND[k] for k in ("start", "suspend", "unsuspend"))
    # customers can do nothing with a suspended server; the provider can
    assert "suspended" in refusal(start, state="stopped", suspended=True, provider=False)
    assert refusal(start, state="stopped", suspended=True, provider=True) is None
    assert refusal(suspend, state="running", suspended=True, provider=True)
    assert refusal(unsuspend, state="stopped", suspended=False, provider=True)
    assert refusal(unsuspend, state="stopped", suspended=True, provider=True) is None
    assert "Only the provider" in refusal(suspend, state="running", suspended=False, provider=False)


def test_every_job_kind_of_a_server_action_has_a_runner():
    from hosting.runners import RUNNERS

    assert {a.kind for a in ACTIONS} <= set(RUNNERS)
    assert {k for k in RUNNERS if not k.startswith("test_")} <= set(JobKind.values)


@pytest.mark.django_db
def test_one_active_job_per_server_is_a_database_constraint(customer, plan, image, host, pool):
    server, job = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind=JobKind.START, server=server)
    job.status = JobStatus.SUCCEEDED
    job.save()
    Job.objects.create(kind=JobKind.START, server=server)  # allowed once the first ended


@pytest.mark.django_db
def test_terminate_cancels_queued_jobs(customer, plan, image, host, pool):
    server, job = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    terminate = request_action(caller=Caller.system(), server=server, action=JobKind.TERMINATE)
    job.refresh_from_db()
    server.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert terminate.status == JobStatus.QUEUED
    assert server.state == ServerState.TERMINATING
    with pytest.raises(IllegalAction):
        request_action(caller=Caller.system(), server=server, action=JobKind.START)


@pytest.mark.django_db
def test_terminate_waits_for_a_running_job(customer, plan, image, host, pool):
    server, job = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    with pytest.raises(Conflict):
        request_action(caller=Caller.system(), server=server, action=JobKind.TERMINATE)
    server.refresh_from_db()
    assert server.state == ServerState.PENDING


@pytest.mark.django_db
def test_suspended_customer_cannot_order(customer, plan, image, host, pool):
    customer.status = "suspended"
    customer.save()
    with pytest.raises(Conflict):
        create_server(
            caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
        )
    assert not Server.objects.exists()


@pytest.mark.django_db
def test_pool_validation():
    pool = IPPool(name="p", network="10.0.0.1/24")
    with pytest.raises(ValidationError, match="host bits set"):
        pool.full_clean()
    pool = IPPool(name="p", network="10.0.0.0/24", gateway="10.1.0.1")
    with pytest.raises(ValidationError, match="not inside"):
        pool.full_clean()
    pool = IPPool(name="p6", network="2001:db8::/64")
    pool.full_clean()
    pool.save()
    assert pool.family == 6


@pytest.mark.django_db
def test_ipv4_and_ipv6_addresses_are_assigned_and_released(customer, plan, image, host, pool):
    IPPoolFactory(name="v6", network="2001:db8::/64", gateway="2001:db8::1")
    server, _ = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    assert sorted(server.addresses.values_list("address", flat=True)) == [
        "192.0.2.2",
        "2001:db8::2",
    ]
    assert ipam.release_addresses(server=server) == 2
    other, _ = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="b"
    )
    assert other.addresses.filter(pool=pool).get().address == "192.0.2.2"  # reused


@pytest.mark.django_db
def test_pool_range_is_respected(customer, plan, image, host):
    IPPoolFactory(
        network="203.0.113.0/24",
        gateway="203.0.113.1",
        range_start="203.0.113.100",
        range_end="203.0.113.101",
    )
    a, _ = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    b, _ = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="b"
    )
    got = [s.addresses.get().address for s in (a, b)]
    assert got == ["203.0.113.100", "203.0.113.101"]


@pytest.mark.django_db
def test_ssh_key_fingerprint_and_rejections(customer):
    key = SSHKey(customer=customer, name="k", public_key=make_public_key(1))
    key.full_clean()
    assert key.fingerprint.startswith("SHA256:") and len(key.fingerprint) == 50
    for bad in ["", "ssh-ed25519", "ssh-dss AAAAB3NzaC1kc3M=", "ssh-ed25519 AAAAB3NzaC1yc2E="]:
        with pytest.raises(ValidationError):
            SSHKey(customer=customer, name="x", public_key=bad).full_clean()


@pytest.mark.django_db
def test_hostname_validation(customer, plan, image, host, pool):
    with pytest.raises(ValidationError):
        create_server(
            caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="bad..name"
        )
    assert not Server.objects.exists()


@pytest.mark.django_db
def test_every_action_names_a_permission_that_exists():
    from django.contrib.auth.models import Permission

    for entry in ACTIONS:
        app_label, codename = entry.permission.split(".")
        assert Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).exists(), entry.kind
