"""Thin Celery tasks: take an id, re-fetch, skip what is gone or done, call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosting.backends import BackendError
from hosting.choices import JobKind, JobStatus
from hosting.models import Job
from hosting.services import jobs as job_service
from hosting.services.operations import execute, record_failure

log = logging.getLogger(__name__)


def _claim(job_id: int) -> Job | None:
    """Mark the job running, unless it is gone, finished, or out of attempts."""
    with transaction.atomic():
        job = job_service.lock_job(job_id)
        if job is None or not job.is_active:
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
    """Give jobs of a lost worker back to the queue (or fail them after enough attempts)."""
    cutoff = timezone.now() - settings.JOB_STALE_AFTER
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
        "pk", flat=True
    )
    count = 0
    for job_id in list(stale):
        with transaction.atomic():
            job = job_service.lock_job(job_id)
            if job is None or job.status != JobStatus.RUNNING:
                continue
            if job.heartbeat_at is not None and job.heartbeat_at >= cutoff:
                continue
            job.status = JobStatus.QUEUED
            job.save(update_fields=["status"])
            job_service.update_progress(job, job.progress, "Worker lost; requeued")
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
