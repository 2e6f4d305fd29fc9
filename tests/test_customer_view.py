"""Customers never see infrastructure (issue 7 #8): no hypervisor URIs or socket paths in
errors and state messages, no host names, staff usernames or job logs, no inactive plans
and images, no image file paths. Staff and billing tokens still see all of it."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from hosting.backends.errors import BackendError, DomainNotFound, HostUnreachable
from hosting.choices import JobStatus, ServerState
from hosting.services import public_messages
from hosting.services.errors import NoCapacity
from hosting.services.events import job_payload
from hosting.services.public_messages import customer_message

from .factories import HostFactory, ImageFactory, JobFactory, PlanFactory, UserFactory

pytestmark = pytest.mark.django_db

URI = "qemu+tcp://10.77.0.2/system"
SOCKET = "/var/run/libvirt/libvirt-sock"
# what a backend leaves in a job's error and a server's state message
BACKEND_ERROR = f"start failed on {URI}: Failed to connect socket to '{SOCKET}': refused"
LEAKS = ("qemu", "10.77.0.2", "/var/run", "libvirt", "hv-frankfurt-7", "ops-alice")


@pytest.fixture
def infra_host(db):
    return HostFactory(name="hv-frankfurt-7", libvirt_uri=URI)


@pytest.fixture
def failed_server(server, infra_host):
    server.host = infra_host
    server.state = ServerState.ERROR
    server.state_message = f"Host hv-frankfurt-7 unreachable: {BACKEND_ERROR}"
    server.save()
    return server


@pytest.fixture
def failed_job(failed_server, infra_host):
    return JobFactory(
        server=failed_server,
        host=infra_host,
        status=JobStatus.FAILED,
        message="Preparing image Debian 12 on hv-frankfurt-7",
        error=BACKEND_ERROR,
        log=[f"12:00:00.000 Preparing image Debian 12 on hv-frankfurt-7 ({URI})"],
        requested_by=UserFactory(username="ops-alice", is_staff=True),
        finished_at=timezone.now(),
    )


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked in {text!r}"


def test_customer_message_maps_backend_exceptions_to_neutral_sentences():
    assert customer_message(HostUnreachable(f"cannot reach {URI}")) == (public_messages.UNREACHABLE)
    assert customer_message(DomainNotFound(f"no such domain on {URI}")) == (
        public_messages.NOT_FOUND
    )
    assert customer_message(BackendError(BACKEND_ERROR)) == public_messages.HYPERVISOR
    assert customer_message(KeyError(SOCKET)) == public_messages.INTERNAL
    # a service's own message is for the caller already
    assert customer_message(NoCapacity("No online host has room for 2 vCPUs.")) == (
        "No online host has room for 2 vCPUs."
    )


def test_customer_message_of_stored_texts():
    # texts with a URI or a socket path become a sentence about what happened
    assert customer_message(BACKEND_ERROR) == public_messages.UNREACHABLE
    assert customer_message("define failed on test:///default: XML error") == (
        public_messages.HYPERVISOR
    )
    assert customer_message("Internal error: KeyError('x')") == public_messages.INTERNAL
    # plain progress stays, with the host's name said as "its host"
    assert customer_message("Server is running") == "Server is running"
    assert customer_message("Preparing image Debian 12 on hv-1", hosts=["hv-1"]) == (
        "Preparing image Debian 12 on its host"
    )
    assert customer_message("") == ""


def test_customer_reads_a_server_without_infrastructure(owner_client, failed_server):
    # when the owner reads its server in error
    body = owner_client.get(f"/api/v1/servers/{failed_server.uuid}/").json()
    # then it has no host and no domain name, and the message says what happened
    assert "host" not in body and "domain_name" not in body
    assert body["state_message"] == public_messages.UNREACHABLE
    assert_no_leak(str(body))
    listed = owner_client.get("/api/v1/servers/").json()["results"][0]
    assert "host" not in listed and listed["state_message"] == public_messages.UNREACHABLE


def test_billing_reads_the_full_server(billing_client, failed_server):
    body = billing_client.get(f"/api/v1/servers/{failed_server.uuid}/").json()
    assert body["host"] == "hv-frankfurt-7"
    assert body["domain_name"] == failed_server.domain_name
    assert URI in body["state_message"]


def test_customer_reads_a_job_without_log_host_or_requester(owner_client, failed_job):
    # when the owner reads a failed job, alone and in the list
    detail = owner_client.get(f"/api/v1/jobs/{failed_job.pk}/").json()
    listed = owner_client.get("/api/v1/jobs/").json()["results"][0]
    for body in (detail, listed):
        # then the log, the host and the staff user who asked are not there
        assert not {"log", "host", "requested_by"} & set(body)
        assert body["error"] == public_messages.UNREACHABLE
        assert body["message"] == "Preparing image Debian 12 on its host"
        assert_no_leak(str(body))


def test_billing_and_staff_read_the_full_job(billing_client, staff, failed_job):
    session = APIClient()
    session.force_login(staff)
    for client in (billing_client, session):
        body = client.get(f"/api/v1/jobs/{failed_job.pk}/").json()
        assert body["error"] == BACKEND_ERROR
        assert body["host"] == "hv-frankfurt-7"
        assert body["requested_by"] == "ops-alice"
        assert URI in body["log"][0]


def test_customer_action_answer_is_customer_safe(owner_client, server, infra_host):
    # given a server on a host with a telling name; when the owner stops it
    server.host = infra_host
    server.save()
    body = owner_client.post(f"/api/v1/servers/{server.uuid}/stop/").json()
    # then the 202's job has no host and no requester
    assert body["kind"] == "stop"
    assert not {"log", "host", "requested_by"} & set(body)


def test_customer_console_error_is_neutral(owner_client, billing_client, server, infra_host):
    server.host = infra_host
    server.save()
    cache.set(
        f"console:{server.uuid}",
        {"text": "boot", "fetched_at": timezone.now(), "error": BACKEND_ERROR},
    )
    url = f"/api/v1/servers/{server.uuid}/console/"
    assert owner_client.get(url).json()["error"] == public_messages.UNREACHABLE
    assert billing_client.get(url).json()["error"] == BACKEND_ERROR


def test_customer_sees_active_catalogue_only_and_no_image_paths(owner_client, billing_client):
    # given an active and a retired plan and image, the image with a file in the store
    PlanFactory(name="Current")
    retired_plan = PlanFactory(name="Retired", is_active=False)
    ImageFactory(name="Debian 12", source="debian/debian-12.qcow2")
    retired_image = ImageFactory(name="CentOS 6", is_active=False)
    # when the customer lists them; then only the active ones, without a source or volume
    plans = owner_client.get("/api/v1/plans/").json()["results"]
    images = owner_client.get("/api/v1/images/").json()["results"]
    assert [p["name"] for p in plans] == ["Current"]
    assert [i["name"] for i in images] == ["Debian 12"]
    assert "source" not in images[0] and "volume_name" not in images[0]
    assert owner_client.get(f"/api/v1/plans/{retired_plan.pk}/").status_code == 404
    assert owner_client.get(f"/api/v1/images/{retired_image.pk}/").status_code == 404
    # and the billing system sees the whole catalogue with the paths
    assert billing_client.get("/api/v1/plans/").json()["count"] == 2
    full = billing_client.get("/api/v1/images/?is_active=true").json()["results"][0]
    assert full["source"] == "debian/debian-12.qcow2"


def test_customer_server_page_shows_no_infrastructure(client, owner, failed_job):
    # given a server in error after a failed job a staff user asked for
    client.force_login(owner)
    url = reverse("dashboard:server-detail", kwargs={"uuid": failed_job.server.uuid})
    # when its owner opens the server page
    page = client.get(url).content.decode()
    # then neither the host, the URI, the socket nor the staff user's name is on it
    assert_no_leak(page)
    assert public_messages.UNREACHABLE.replace("'", "&#x27;") in page
    assert "provider" in page


def test_staff_server_page_shows_the_details(client, staff, failed_job):
    client.force_login(staff)
    url = reverse("dashboard:server-detail", kwargs={"uuid": failed_job.server.uuid})
    page = client.get(url).content.decode()
    assert "hv-frankfurt-7" in page and "ops-alice" in page and URI in page


def test_customer_console_error_on_the_socket_is_neutral(server, infra_host):
    from hosting.services.console import ConsoleTail, tail_message

    server.host = infra_host
    server.save()
    tail = ConsoleTail(text="", fetched_at=timezone.now(), error=BACKEND_ERROR)
    message = tail_message(server, tail)
    assert_no_leak(str(message))
    assert "cannot be reached" in message["error"]


def test_websocket_job_payload_is_customer_safe(failed_job):
    # the job's updates go to the customer's group too
    payload = job_payload(failed_job)["job"]
    assert payload["error"] == public_messages.UNREACHABLE
    assert_no_leak(str(payload))
