"""Jobs: creating them, enqueueing them on commit, and every write to a running job.

A worker holds a job through its lease: `claim()` raises `Job.lease` and every later write
(`update_progress`, `schedule_retry`, `finish`, and the runner's state writes) matches it,
so a worker that lost its job can no longer write once another worker took it over. While
a job runs, a `Heartbeat` thread keeps `heartbeat_at` fresh, also while a step blocks;
`requeue_stale()` gives back only jobs whose heartbeat stopped (their worker died).

Tasks are sent by name (hosting/services/dispatch.py), so this module does not import the
workers package: the dependency points one way, from workers to hosting.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..choices import ACTIVE_JOB_STATUSES, JobStatus
from ..models import Host, Job, Server
from . import dispatch
from .errors import Conflict
from .events import publish_job

if TYPE_CHECKING:
    from ..access import Caller

log = logging.getLogger(__name__)

MAX_LOG_LINES = 500
DEFAULT_QUEUE = "paddock"


class LeaseLost(Exception):
    """This worker no longer holds the job: another worker took it over, or it ended."""


class GaveUp(Exception):
    """The job was failed at claim time: too many workers were lost running it."""

    def __init__(self, job: Job):
        super().__init__(job.error)
        self.job = job


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
    target_host: Host | None = None,
    params: dict | None = None,
    caller: Caller | None = None,
) -> Job:
    """Create a queued job and enqueue it when the surrounding transaction commits.

    The partial unique constraint turns a second active job for one server into Conflict.
    """
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                server=server,
                host=host or (server.host if server else None),
                target_host=target_host,
                params=params or {},
                requested_by=caller.user if caller is not None else None,
                requested_via_token=caller.token if caller is not None else None,
                message="Queued",
            )
    except IntegrityError as exc:
        raise Conflict("This server already has a job in progress.") from exc
    enqueue_on_commit(job)
    publish_job(job)
    return job


def queue_of(job: Job) -> str:
    return job.host.queue if job.host is not None else DEFAULT_QUEUE


def enqueue_on_commit(job: Job, *, countdown: float | None = None) -> None:
    queue, job_id = queue_of(job), job.pk
    transaction.on_commit(
        lambda: dispatch.send(dispatch.RUN_JOB, args=[job_id], queue=queue, countdown=countdown)
    )


def _log_line(job: Job, now: datetime, message: str) -> list[str]:
    return [*job.log, f"{log_time(now)} {message}"][-MAX_LOG_LINES:]


def _held(job: Job):
    """The job's row, if this worker's lease on it still holds."""
    return Job.objects.filter(pk=job.pk, lease=job.lease, status=JobStatus.RUNNING)


def require_lease(job: Job) -> None:
    """Inside a transaction: lock the job row and make sure this worker still holds it."""
    if not _held(job).select_for_update().exists():
        raise LeaseLost(f"Job {job.pk} is no longer held with lease {job.lease}.")


def update_progress(job: Job, progress: int, message: str) -> None:
    """Record a step of a running job; stored at once so that a crash leaves a trace."""
    now = timezone.now()
    progress = max(0, min(100, progress))
    log_lines = _log_line(job, now, message)
    with transaction.atomic():
        written = _held(job).update(
            progress=progress, message=message[:300], log=log_lines, heartbeat_at=now
        )
        if not written:
            raise LeaseLost(f"Job {job.pk} is no longer held with lease {job.lease}.")
        job.progress, job.message, job.log, job.heartbeat_at = (
            progress,
            message[:300],
            log_lines,
            now,
        )
        publish_job(job)


def _note(job: Job, message: str) -> None:
    """A log line written by the job's manager (claim, requeue), not by its worker."""
    now = timezone.now()
    job.message = message[:300]
    job.log = _log_line(job, now, message)


def claim(job_id: int) -> Job | None:
    """Take the job for this worker: raise its lease and mark it running.

    Nothing to do (None) when it is gone or finished, when a live worker runs it (a
    duplicate message), or when it is a retry whose time has not come. A running job whose
    heartbeat stopped is taken over: its worker was lost, which counts as an attempt.
    Raises GaveUp (after committing the failure) when that was one lost worker too many.
    """
    with transaction.atomic():
        job = lock_job(job_id)
        if job is None or not job.is_active:
            return None
        now = timezone.now()
        if job.status == JobStatus.RUNNING:
            if job.heartbeat_at is not None and job.heartbeat_at >= stale_cutoff():
                return None
            _worker_lost(job)
        elif job.run_after is not None and job.run_after > now:
            return None
        if job.status != JobStatus.FAILED:
            job.status = JobStatus.RUNNING
            job.lease += 1
            job.started_at = job.started_at or now
            job.heartbeat_at = now
            job.run_after = None
            if job.attempts or job.retries:
                _note(job, f"Running (retry {job.retries}, lost workers {job.attempts})")
            else:
                job.message = "Running"
            job.save(
                update_fields=[
                    *("status", "lease", "started_at", "heartbeat_at", "run_after"),
                    *("message", "log", "attempts"),
                ]
            )
            publish_job(job)
    if job.status == JobStatus.FAILED:
        raise GaveUp(job)
    return job


def _worker_lost(job: Job) -> None:
    """Count a lost worker; fail the job when that exhausts its attempts. Row locked."""
    job.attempts += 1
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        now = timezone.now()
        job.status = JobStatus.FAILED
        job.error = f"Gave up after {job.attempts} lost workers (a worker died running it)."
        job.finished_at = now
        _note(job, f"Failed: {job.error}")
        job.message = "Failed"
        job.lease += 1  # whatever still runs it may no longer write
        job.save(
            update_fields=["status", "error", "finished_at", "message", "log", "attempts", "lease"]
        )
        publish_job(job)


def schedule_retry(job: Job, *, run_after: datetime, message: str, count: bool = True) -> None:
    """After a transient error: queue the job again, to run no earlier than `run_after`.
    `count` False: not a retry (a job that waits on others runs again later)."""
    now = timezone.now()
    with transaction.atomic():
        require_lease(job)
        if count:
            job.retries += 1
        job.status = JobStatus.QUEUED
        job.run_after = run_after
        _note(job, message)
        job.heartbeat_at = now
        fields = ["retries", "status", "run_after", "message", "log", "heartbeat_at"]
        if not count:  # what it recorded so far is where its next run picks up
            fields += ["result", "progress"]
        job.save(update_fields=fields)
        publish_job(job)
        enqueue_on_commit(job, countdown=max(0.0, (run_after - now).total_seconds()))


def finish(job: Job, *, status: str, message: str, error: str = "") -> None:
    """End the job. A worker ends only a job it holds (a running one with its lease); the
    manager cancels queued ones (`lease` then is what it read under the row lock)."""
    now = timezone.now()
    log_lines = [
        *job.log,
        f"{log_time(now)} {message}" + (f": {error}" if error else ""),
    ][-MAX_LOG_LINES:]
    progress = 100 if status == JobStatus.SUCCEEDED else job.progress
    with transaction.atomic():
        written = Job.objects.filter(
            pk=job.pk, lease=job.lease, status__in=ACTIVE_JOB_STATUSES
        ).update(
            status=status,
            message=message[:300],
            error=error,
            finished_at=now,
            progress=progress,
            log=log_lines,
            result=job.result,
        )
        if not written:
            raise LeaseLost(f"Job {job.pk} is no longer held with lease {job.lease}.")
        job.status, job.message, job.error, job.finished_at = status, message[:300], error, now
        job.progress, job.log = progress, log_lines
        publish_job(job)


def stale_cutoff() -> datetime:
    return timezone.now() - settings.JOB_STALE_AFTER


def requeue_stale() -> int:
    """Put jobs whose work or message was lost back on the queue.

    - running, but its heartbeat stopped: the worker died (counted; the job fails once it
      is out of attempts, otherwise the next worker takes over with a new lease);
    - queued for longer than the stale period after it was due: its message was lost (a
      broker that restarted without persistence). A duplicate message is harmless:
      `claim` lets only one worker run a job.
    """
    cutoff = stale_cutoff()
    # a queued job's last sign of life: when its retry is due, else its last write
    last = Coalesce("run_after", "heartbeat_at", "created_at")
    stale = Job.objects.annotate(last=last).filter(
        Q(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
        | Q(status=JobStatus.QUEUED, last__lt=cutoff)
    )
    count = 0
    for job_id in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            job = lock_job(job_id)
            if job is None or not job.is_active:
                continue
            if job.status == JobStatus.RUNNING:
                last_seen = job.heartbeat_at or job.created_at
            else:
                last_seen = job.run_after or job.heartbeat_at or job.created_at
            if last_seen >= cutoff:
                continue
            if job.status == JobStatus.RUNNING:
                _worker_lost(job)
                if job.status == JobStatus.FAILED:
                    continue
                reason = "Worker lost"
            else:
                reason = "Message lost"
            job.status = JobStatus.QUEUED
            job.lease += 1  # the lost worker, should it wake up, may not write any more
            job.heartbeat_at = timezone.now()
            _note(job, f"{reason}; requeued")
            job.save(
                update_fields=["status", "lease", "heartbeat_at", "message", "log", "attempts"]
            )
            publish_job(job)
            enqueue_on_commit(job)
            count += 1
    return count


class Heartbeat:
    """Keeps a running job's heartbeat fresh from a thread of its own, also while a step
    blocks (an image upload, a guest that takes its time to shut down). It stops beating,
    and sets `lost`, once the job's lease is no longer this worker's."""

    def __init__(self, job: Job, every: float | None = None):
        self.job_id, self.lease = job.pk, job.lease
        self.every = every if every is not None else settings.JOB_HEARTBEAT_SECONDS
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-job-{job.pk}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    written = Job.objects.filter(
                        pk=self.job_id, lease=self.lease, status=JobStatus.RUNNING
                    ).update(heartbeat_at=timezone.now())
                except Exception:  # a database hiccup: try again on the next beat
                    log.warning("job %s: heartbeat not written", self.job_id, exc_info=True)
                    close_old_connections()
                    continue
                if not written:
                    self.lost.set()
                    return
        finally:
            connection.close()
