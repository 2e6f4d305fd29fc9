"""Host onboarding: capacity read from the hypervisor by a worker, unreachable hosts refused."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from hosting.choices import HostState, JobStatus
from hosting.models import Host

from .factories import TEST_QUEUE
from .test_provisioning import wait_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def staff_client(staff):
    client = APIClient()
    client.force_login(staff)
    return client


def add_host(client, name, uri):
    resp = client.post(
        "/api/v1/hosts/",
        {"name": name, "libvirt_uri": uri, "storage_pool": "default-pool", "queue": TEST_QUEUE},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    return Host.objects.get(name=name)


def test_adding_a_host_reads_its_capacity(celery_worker, staff_client):
    host = add_host(staff_client, "hv1", "test:///default?onboard=1")
    job = wait_job(host.jobs.get().pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    host.refresh_from_db()
    # the figures libvirt's test driver reports for its built-in node
    assert (host.cpus, host.memory_mib, host.disk_gib) == (16, 3072, 100)
    assert host.state == HostState.ONLINE
    assert host.hypervisor_version == "TEST 0.0.2"
    # the virtualization type is read from the host (the test driver names its own)
    assert host.detected_virt_type == "test"
    assert host.last_seen is not None and host.last_error == ""


def test_unreachable_host_is_refused_with_the_reason(celery_worker, staff_client, settings):
    settings.JOB_MAX_RETRIES = 1  # a transient error: retried (once here), then reported
    settings.JOB_RETRY_BACKOFF = 0.05
    host = add_host(staff_client, "hv-gone", "qemu+tcp://127.0.0.1:1/system")
    job = wait_job(host.jobs.get().pk)
    assert job.status == JobStatus.FAILED
    host.refresh_from_db()
    assert host.state == HostState.OFFLINE
    assert "cannot reach qemu+tcp://127.0.0.1:1/system" in host.last_error
    assert "Connection refused" in host.last_error
    assert host.last_error in job.error


def test_the_host_api_shows_virt_type_and_capabilities(staff_client):
    # given a host on the test driver, and one on QEMU that cannot be reached
    test = add_host(staff_client, "hv-test", "test:///default?api=1")
    far = add_host(staff_client, "hv-far", "qemu+tcp://127.0.0.1:1/system")
    # when staff read them, and force TCG on one
    resp = staff_client.patch(f"/api/v1/hosts/{far.pk}/", {"virt_type": "qemu"}, format="json")
    assert resp.status_code == 200, resp.content
    test_body = staff_client.get(f"/api/v1/hosts/{test.pk}/").json()
    far_body = staff_client.get(f"/api/v1/hosts/{far.pk}/").json()
    # then each shows its backend's capabilities, read without connecting
    assert "live_migration" in far_body["capabilities"]
    assert "live_migration" not in test_body["capabilities"]
    assert "pause" in test_body["capabilities"]
    assert far_body["virt_type"] == "qemu" and test_body["virt_type"] == "auto"
    Host.objects.filter(pk=far.pk).update(detected_virt_type="kvm")
    assert staff_client.get(f"/api/v1/hosts/{far.pk}/").json()["detected_virt_type"] == "kvm"
