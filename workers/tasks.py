"""Thin Celery tasks: take an id, re-fetch, skip what is gone or done, call the service.

The job's lifecycle (claim, lease, heartbeat, retries with backoff, failure) lives in
hosting/runners.py and hosting/services/jobs.py; tasks only hand ids over. Services send
`run_job` by name, so hosting never imports this module.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task
from django.conf import settings

from hosting.backends import BackendError, get_backend
from hosting.choices import HostState
from hosting.models import Host, Server
from hosting.runners import run_job as run
from hosting.services import balancer, quotas, stats_history
from hosting.services import jobs as job_service
from hosting.services.collector import collect_host, stats_queue
from hosting.services.console import refresh as refresh_console
from hosting.services.reconcile import reconcile_host as reconcile

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: int) -> str:
    outcome = run(job_id)
    log.info("job %s: %s", job_id, outcome)
    return outcome


@shared_task(ignore_result=True)
def purge_expired_backups() -> int:
    from hosting.services.backups import purge_expired

    return purge_expired()


@shared_task(ignore_result=True)
def verify_backup_sample() -> int:
    from hosting.services.backups import verify_sample

    return verify_sample()


@shared_task(ignore_result=True)
def run_backup_policies() -> dict:
    from hosting.services.backup_policies import run_policies

    return run_policies()


@shared_task(ignore_result=True)
def requeue_stale_jobs() -> int:
    return job_service.requeue_stale()


@shared_task
def reconcile_host(host_id: int) -> dict | None:
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    return asdict(reconcile(host=host))


@shared_task
def reconcile_all() -> int:
    """Queue a reconciliation of every host on the host's own queue."""
    hosts = list(Host.objects.values_list("pk", "queue"))
    for host_id, queue in hosts:
        reconcile_host.apply_async(args=(host_id,), queue=queue, expires=120)
    return len(hosts)


@shared_task
def fetch_console(server_id: int) -> int:
    server = Server.objects.select_related("host").filter(pk=server_id).first()
    if server is None or server.host is None:
        return 0
    return len(refresh_console(server).text)


@shared_task(ignore_result=True)
def collect_stats() -> int:
    """Beat, every STATS_INTERVAL: one collector pass per reachable host, queued on the
    host's stats queue; a pass not started within the interval is dropped (the next one
    replaces it), so a slow collector never builds a backlog."""
    hosts = list(Host.objects.exclude(state=HostState.OFFLINE).only("pk", "queue"))
    for host in hosts:
        collect_host_stats.apply_async(
            args=(host.pk,), queue=stats_queue(host), expires=settings.STATS_INTERVAL
        )
    return len(hosts)


@shared_task(ignore_result=True, acks_late=False)
def collect_host_stats(host_id: int) -> dict | None:
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    result = collect_host(host=host)
    return {"samples": result.samples, "sent": result.sent, "skipped": result.skipped}


@shared_task(ignore_result=True)
def trim_stats() -> dict:
    return stats_history.trim()


@shared_task(ignore_result=True)
def check_transfer_quotas() -> dict:
    return asdict(quotas.check_transfer())


@shared_task
def set_server_bandwidth(server_id: int, kbps: int | None) -> bool:
    """Runs on the server's host queue (the transfer quota's throttle, or its removal)."""
    server = Server.objects.select_related("host").filter(pk=server_id).first()
    if server is None or server.host is None:
        return False
    try:
        get_backend(server.host).set_bandwidth(server.domain_name, kbps)
    except BackendError as exc:
        log.warning("bandwidth of %s not set: %s", server.hostname, exc)
        return False
    return True


@shared_task(ignore_result=True, expires=60)
def balance_zones() -> list[dict]:
    """Beat, every BALANCE_INTERVAL: one balancer tick per zone that balances."""
    return [
        {"zone": r.zone, "spread": round(r.spread, 4), "plan": r.plan.pk if r.plan else None}
        for r in balancer.tick_all()
    ]
