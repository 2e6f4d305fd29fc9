"""`/metrics` for Prometheus (prometheus-client's text format), read from the database and
the collector's last samples at each scrape, so every web process answers the same:

- per host: vCPUs, memory and disk allocated and capacity, guests, live CPU use;
- jobs by kind and status (count), durations of finished jobs by kind and status;
- collector lag per host: seconds since its last collector pass.

Who may read it: a staff session, or a scraper sending `Authorization: Bearer <token>`
with PADDOCK_METRICS_TOKEN (compared in constant time). Anyone else gets a 403.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from .models import Job
from .services.collector import last_sample_key
from .services.placement import host_usage


class PaddockCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._hosts()
        yield from self._jobs()

    def _hosts(self) -> Iterator[Metric]:
        labels = ["host"]
        gauges = {
            name: GaugeMetricFamily(f"paddock_host_{name}", doc, labels=labels)
            for name, doc in (
                ("vcpus_used", "vCPUs allocated to the host's servers."),
                ("vcpus_capacity", "vCPUs the host may allocate (CPUs x overcommit)."),
                ("memory_used_mib", "Memory allocated to the host's servers, MiB."),
                ("memory_capacity_mib", "Memory the host may allocate, MiB."),
                ("disk_used_gib", "Disk allocated to the host's servers, GiB."),
                ("disk_capacity_gib", "The host's disk, GiB."),
                ("servers", "Servers placed on the host."),
                ("guests_running", "Guests running at the collector's last pass."),
                ("cpu_percent", "CPU use of all guests at the last pass, % of the host."),
                ("up", "1 when the host is online."),
            )
        }
        lag = GaugeMetricFamily(
            "paddock_collector_lag_seconds",
            "Seconds since the collector's last pass over the host.",
            labels=labels,
        )
        usages = host_usage()
        last = cache.get_many([last_sample_key(u.host.pk) for u in usages])
        now = time.time()
        for u in usages:
            h = u.host
            values = {
                "vcpus_used": u.vcpus_used,
                "vcpus_capacity": h.vcpu_capacity,
                "memory_used_mib": u.memory_used_mib,
                "memory_capacity_mib": h.memory_capacity_mib,
                "disk_used_gib": u.disk_used_gib,
                "disk_capacity_gib": h.disk_gib,
                "servers": u.servers,
                "up": 1 if h.state == "online" else 0,
            }
            sample = last.get(last_sample_key(h.pk))
            if sample:
                values["guests_running"] = sample["servers"]
                values["cpu_percent"] = sample["cpu_pct"]
                lag.add_metric([h.name], max(0.0, now - sample["t"]))
            for name, value in values.items():
                gauges[name].add_metric([h.name], float(value))
        yield from gauges.values()
        yield lag

    def _jobs(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "paddock_jobs", "Jobs in the database by kind and status.", labels=["kind", "status"]
        )
        for row in Job.objects.values("kind", "status").annotate(n=Count("pk")).order_by():
            jobs.add_metric([row["kind"], row["status"]], row["n"])
        yield jobs
        durations = SummaryMetricFamily(
            "paddock_job_duration_seconds",
            "Run time (start to finish) of finished jobs by kind and status.",
            labels=["kind", "status"],
        )
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        rows = (
            Job.objects.filter(started_at__isnull=False, finished_at__isnull=False)
            .values("kind", "status")
            .annotate(n=Count("pk"), total=Sum(took))
            .order_by()
        )
        for row in rows:
            seconds = row["total"].total_seconds() if row["total"] is not None else 0.0
            durations.add_metric([row["kind"], row["status"]], row["n"], seconds)
        yield durations


def may_scrape(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse("Staff session or metrics token required.\n", status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PaddockCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
