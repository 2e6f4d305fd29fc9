"""Creating jobs, enqueueing them on commit, and recording their progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..choices import JobStatus
from ..models import Host, Job, Server
from .errors import Conflict
from .events import publish_job

MAX_LOG_LINES = 500


def log_time(moment: datetime) -> str:
    """A job log line's time: UTC, to the millisecond (bench/provision.py reads it)."""
    return moment.strftime("%H:%M:%S.%f")[:12]


def lock_job(job_id: int) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


def create_job(
    *,
    kind: str,
    server: Server | None = None,
    host: Host | None = None,
    requested_by: Any = None,
    token: Any = None,
) -> Job:
    """Create a queued job and enqueue it when the surrounding transaction commits.

    The partial unique constraint turns a second active job for one server into Conflict.
    """
    user = requested_by if getattr(requested_by, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                server=server,
                host=host or (server.host if server else None),
                requested_by=user,
                requested_via_token=token,
                message="Queued",
            )
    except IntegrityError as exc:
        raise Conflict("This server already has a job in progress.") from exc
    enqueue_on_commit(job)
    publish_job(job)
    return job


def enqueue_on_commit(job: Job) -> None:
    from workers.tasks import run_job

    queue = job.host.queue if job.host is not None else "paddock"
    job_id = job.pk
    transaction.on_commit(lambda: run_job.apply_async(args=[job_id], queue=queue))


def update_progress(job: Job, progress: int, message: str) -> None:
    """Record a step of a running job; stored at once so that a crash leaves a trace."""
    now = timezone.now()
    job.progress = max(0, min(100, progress))
    job.message = message[:300]
    job.log = [*job.log, f"{log_time(now)} {message}"][-MAX_LOG_LINES:]
    job.heartbeat_at = now
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            progress=job.progress, message=job.message, log=job.log, heartbeat_at=now
        )
        publish_job(job)


def start(job: Job) -> None:
    now = timezone.now()
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.started_at = job.started_at or now
    job.heartbeat_at = now
    job.message = "Running" if job.attempts == 1 else f"Running (attempt {job.attempts})"
    job.save(update_fields=["status", "attempts", "started_at", "heartbeat_at", "message"])
    publish_job(job)


def finish(job: Job, *, status: str, message: str, error: str = "") -> None:
    now = timezone.now()
    job.status = status
    job.message = message[:300]
    job.error = error
    job.finished_at = now
    if status == JobStatus.SUCCEEDED:
        job.progress = 100
    job.log = [*job.log, f"{log_time(now)} {message}" + (f": {error}" if error else "")][
        -MAX_LOG_LINES:
    ]
    job.save(update_fields=["status", "message", "error", "finished_at", "progress", "log"])
    publish_job(job)
