"""/metrics: scraped with a token or a staff session, parsed by Prometheus' own parser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hosting.choices import JobKind, JobStatus
from hosting.services.collector import last_sample_key

from .factories import JobFactory

TOKEN = "scrape-me-please-0123456789"


def families(body: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def value(family, name: str, **labels) -> float:
    (sample,) = [s for s in family.samples if s.name == name and s.labels == labels]
    return sample.value


@pytest.fixture
def scraper(client, settings):
    settings.METRICS_TOKEN = TOKEN
    return client


@pytest.mark.django_db
def test_a_scrape_parses_with_host_utilization_jobs_and_collector_lag(scraper, server, host):
    # given a finished job that ran 90 s, a queued one, and a collector pass 5 s ago
    now = timezone.now()
    JobFactory(
        server=server,
        kind=JobKind.PROVISION,
        status=JobStatus.SUCCEEDED,
        started_at=now - timedelta(seconds=100),
        finished_at=now - timedelta(seconds=10),
    )
    JobFactory(server=server, kind=JobKind.REBOOT, status=JobStatus.QUEUED)
    sample = {"t": now.timestamp() - 5, "servers": 1, "cpu_pct": 12.5}
    cache.set(last_sample_key(host.pk), sample)

    # when Prometheus scrapes with the token
    try:
        resp = scraper.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    finally:
        cache.delete(last_sample_key(host.pk))

    # then it parses, with the figures
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain")
    f = families(resp.content)
    name = host.name
    assert value(f["paddock_host_vcpus_used"], "paddock_host_vcpus_used", host=name) == 1
    assert (
        value(f["paddock_host_vcpus_capacity"], "paddock_host_vcpus_capacity", host=name)
        == host.vcpu_capacity
    )
    assert value(f["paddock_host_servers"], "paddock_host_servers", host=name) == 1
    assert value(f["paddock_host_cpu_percent"], "paddock_host_cpu_percent", host=name) == 12.5
    lag = value(f["paddock_collector_lag_seconds"], "paddock_collector_lag_seconds", host=name)
    assert 5 <= lag < 60
    jobs = f["paddock_jobs"]
    assert value(jobs, "paddock_jobs", kind="provision", status="succeeded") == 1
    assert value(jobs, "paddock_jobs", kind="reboot", status="queued") == 1
    took = f["paddock_job_duration_seconds"]
    labels = {"kind": "provision", "status": "succeeded"}
    assert value(took, "paddock_job_duration_seconds_count", **labels) == 1
    assert value(took, "paddock_job_duration_seconds_sum", **labels) == pytest.approx(90)


@pytest.mark.django_db
def test_only_staff_sessions_and_the_token_may_scrape(scraper, owner, staff, client):
    assert scraper.get("/metrics").status_code == 403
    assert scraper.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(owner)
    assert client.get("/metrics").status_code == 403
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_without_a_token_set_no_bearer_is_accepted(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
