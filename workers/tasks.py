"""Thin Celery tasks: take an id, re-fetch, skip what is gone or done, call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from hosting.backends import BackendError
from hosting.choices import JobKind, JobStatus
from hosting.models import Job
from hosting.services import jobs as job_service
from hosting.services.operations import execute, record_failure

log = logging.getLogger(__name__)


def _stale_cutoff():
    return timezone.now() - settings.JOB_STALE_AFTER


def _claim(job_id: int) -> Job | None:
    """Mark the job running, unless it is gone, finished, out of attempts, or running in a
    live worker (a duplicate message). A running job whose worker stopped reporting is taken
    over: that is the redelivery of a lost worker's message."""
    with transaction.atomic():
        job = job_service.lock_job(job_id)
        if job is None or not job.is_active:
            return None
        if job.status == JobStatus.RUNNING and (
            job.heartbeat_at is None or job.heartbeat_at >= _stale_cutoff()
        ):
            return None
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            job_service.finish(
                job,
                status=JobStatus.FAILED,
                message="Failed",
                error=f"Gave up after {job.attempts} attempts (a worker was lost).",
            )
            transaction.on_commit(lambda: record_failure(job, BackendError("worker lost")))
            return None
        job_service.start(job)
        return job


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def run_job(self, job_id: int) -> None:
    job = _claim(job_id)
    if job is None:
        log.info("job %s: nothing to do", job_id)
        return
    try:
        message = execute(job)
    except BackendError as exc:
        # an unreachable host is worth retrying for server work; onboarding reports at once
        retry = exc.transient and job.kind != JobKind.HOST_REFRESH
        if retry and self.request.retries < self.max_retries:
            countdown = min(300, 5 * 2**self.request.retries)
            job_service.update_progress(
                job, job.progress, f"{exc.message}; retrying in {countdown} s"
            )
            Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
            raise self.retry(countdown=countdown, exc=exc) from exc
        job_service.finish(job, status=JobStatus.FAILED, message="Failed", error=exc.message)
        record_failure(job, exc)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        job_service.finish(
            job, status=JobStatus.FAILED, message="Failed", error=f"Internal error: {exc}"
        )
        record_failure(job, exc)
    else:
        job_service.finish(job, status=JobStatus.SUCCEEDED, message=message)


@shared_task
def requeue_stale_jobs() -> int:
    """Put jobs whose work or message was lost back on the queue.

    - running, but its worker stopped reporting: the worker died (the next attempt takes
      over, or the job fails once it is out of attempts);
    - queued for longer than the stale period: its message was lost (a broker that
      restarted without persistence). A duplicate message is harmless: `_claim` lets
      only one worker run a job.
    """
    cutoff = _stale_cutoff()
    last_activity = Coalesce("heartbeat_at", "created_at")
    stale = Job.objects.annotate(last=last_activity).filter(
        Q(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
        | Q(status=JobStatus.QUEUED, last__lt=cutoff)
    )
    count = 0
    for job_id in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            job = job_service.lock_job(job_id)
            if job is None or not job.is_active:
                continue
            last = job.heartbeat_at or job.created_at
            if last >= cutoff:
                continue
            reason = "Worker lost" if job.status == JobStatus.RUNNING else "Message lost"
            job.status = JobStatus.QUEUED
            job.save(update_fields=["status"])
            job_service.update_progress(job, job.progress, f"{reason}; requeued")
            job_service.enqueue_on_commit(job)
            count += 1
    return count


@shared_task
def reconcile_host(host_id: int) -> dict | None:
    from dataclasses import asdict

    from hosting.models import Host
    from hosting.services.reconcile import reconcile_host as reconcile

    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    return asdict(reconcile(host=host))


@shared_task
def reconcile_all() -> int:
    """Queue a reconciliation of every host on the host's own queue."""
    from hosting.models import Host

    hosts = list(Host.objects.values_list("pk", "queue"))
    for host_id, queue in hosts:
        reconcile_host.apply_async(args=[host_id], queue=queue, expires=120)
    return len(hosts)


@shared_task
def fetch_console(server_id: int) -> int:
    from hosting.models import Server
    from hosting.services.console import refresh

    server = Server.objects.select_related("host").filter(pk=server_id).first()
    if server is None or server.host is None:
        return 0
    return len(refresh(server).text)
