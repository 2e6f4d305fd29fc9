"""The operations overview for staff: host capacity, recent jobs, recent failures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from hosting.choices import ACTIVE_JOB_STATUSES, JobStatus, ServerState
from hosting.models import Customer, Job, Server
from hosting.services.placement import host_usage

from ..templatetags.paddock import mib

FAILURE_WINDOW = timedelta(days=7)


def meter(label: str, used: int, total: int, show: Callable[[int], str] = str) -> dict:
    """One capacity bar: used, total and free as people read them, and a colour."""
    pct = min(100, round(100 * used / total)) if total > 0 else 0
    level = "danger" if pct >= 90 else "warning" if pct >= 70 else "success"
    return {
        "label": label,
        "used": show(used),
        "total": show(total),
        "free": show(total - used),
        "pct": pct,
        "level": level,
    }


def gib(value: int) -> str:
    return f"{value} GiB"


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    hosts = [
        {
            "usage": usage,
            "host": usage.host,
            "meters": [
                meter("vCPU", usage.vcpus_used, usage.host.vcpu_capacity),
                meter("Memory", usage.memory_used_mib, usage.host.memory_capacity_mib, mib),
                meter("Disk", usage.disk_used_gib, usage.host.disk_gib, gib),
            ],
        }
        for usage in host_usage()
    ]
    jobs = Job.objects.select_related("server", "host", "requested_by")
    by_state = dict(Server.objects.alive().values_list("state").annotate(n=Count("id")).order_by())
    context = {
        "hosts": hosts,
        "recent_jobs": jobs[:15],
        "failures": jobs.filter(
            status=JobStatus.FAILED, created_at__gte=timezone.now() - FAILURE_WINDOW
        )[:10],
        "active_jobs": Job.objects.filter(status__in=ACTIVE_JOB_STATUSES).count(),
        "server_states": [
            (value, label, by_state.get(value, 0))
            for value, label in ServerState.choices
            if value != ServerState.TERMINATED
        ],
        "server_total": sum(by_state.values()),
        "customer_count": Customer.objects.count(),
    }
    return render(request, "dashboard/staff/overview.html", context)


# A host above this share of any capacity (CPU time, memory, disk) stands out on the fleet
# page; the browser applies it to every live sample (data-overload-pct).
OVERLOAD_PCT = 85


@staff_member_required
def fleet(request: HttpRequest) -> HttpResponse:
    """Every host, live: CPU, memory and disk use against capacity and the busiest servers,
    from the `stats.host` samples of the fleet socket (/ws/fleet/, static/fleet.js). The
    page starts from the allocation the database knows (plans placed on each host)."""
    hosts = [
        {
            "host": usage.host,
            "servers": usage.servers,
            "allocated": [
                meter("vCPU", usage.vcpus_used, usage.host.vcpu_capacity),
                meter("Memory", usage.memory_used_mib, usage.host.memory_capacity_mib, mib),
                meter("Disk", usage.disk_used_gib, usage.host.disk_gib, gib),
            ],
        }
        for usage in host_usage()
    ]
    return render(
        request, "dashboard/staff/fleet.html", {"hosts": hosts, "overload_pct": OVERLOAD_PCT}
    )
