"""The job runner: leases, heartbeats, lost workers, retries with backoff, start-up check."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from hosting.access import Caller
from hosting.checks import job_timing
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.models import Job
from hosting.runners import RUNNERS, JobContext, runner
from hosting.services import dispatch
from hosting.services import jobs as job_service
from hosting.services.jobs import GaveUp, LeaseLost
from hosting.services.servers import create_server

from .factories import HostFactory, ServerFactory
from .test_provisioning import wait_job

# A runner kind of the tests' own: it blocks without reporting progress, as an image
# upload or a slow guest shutdown does, and records every run it starts.
SLOW = "test_slow_step"
RUNS: list[tuple[int, int]] = []
if SLOW not in RUNNERS:

    @runner(SLOW, subject="host", longest_step=5)
    def slow_step(ctx: JobContext) -> str:
        RUNS.append((ctx.job.pk, ctx.job.lease))
        time.sleep(float(ctx.params.get("seconds", 1)))
        ctx.progress(90, "Slow step done")
        return "done"


UNREACHABLE = "qemu+tcp://127.0.0.1:1/system"  # nothing listens: connection refused


def queue(kind: str, **fields) -> Job:
    with transaction.atomic():
        return job_service.create_job(kind=kind, **fields)


# --- leases and lost workers (no worker needed) ------------------------------------------


@pytest.mark.django_db
def test_stale_running_job_is_taken_over_then_failed(customer, plan, image, host, pool, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    _, job = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    # given a worker that claimed the job and died without a word
    claimed = job_service.claim(job.pk)
    assert claimed is not None and claimed.lease == 1 and claimed.attempts == 0
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - settings.JOB_STALE_AFTER - timedelta(seconds=1)
    )
    # when the beat task looks: the job is requeued under a new lease, one worker lost
    assert job_service.requeue_stale() == 1
    job.refresh_from_db()
    assert (job.status, job.lease, job.attempts) == (JobStatus.QUEUED, 2, 1)
    assert "Worker lost" in job.message
    assert job_service.requeue_stale() == 0  # fresh again
    # the dead worker's writes are refused from now on
    with pytest.raises(LeaseLost):
        job_service.update_progress(claimed, 50, "still here?")
    with pytest.raises(LeaseLost):
        job_service.finish(claimed, status=JobStatus.SUCCEEDED, message="done")
    # when the second worker dies too, the job fails: out of attempts
    second = job_service.claim(job.pk)
    assert second is not None and second.lease == 3
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - settings.JOB_STALE_AFTER - timedelta(seconds=1)
    )
    with pytest.raises(GaveUp):
        job_service.claim(job.pk)  # the redelivered message of the second worker
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "Gave up after 2 lost workers" in job.error


@pytest.mark.django_db
def test_lost_queued_message_is_requeued_and_duplicates_run_once(
    customer, plan, image, host, pool, settings
):
    _, job = create_server(
        caller=Caller.system(), customer=customer, plan=plan, image=image, hostname="a"
    )
    # a queued job whose message the broker lost: old, never started
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - settings.JOB_STALE_AFTER - timedelta(seconds=1)
    )
    assert job_service.requeue_stale() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and "Message lost" in job.message
    assert job_service.requeue_stale() == 0  # its activity is fresh again
    # two messages for one job: the first claims it, the second finds it running
    assert job_service.claim(job.pk) is not None
    assert job_service.claim(job.pk) is None
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempts == 0


@pytest.mark.django_db
def test_a_retry_is_not_stale_before_it_is_due(host, settings):
    job = queue(JobKind.HOST_REFRESH, host=host)
    later = timezone.now() + settings.JOB_STALE_AFTER
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - settings.JOB_STALE_AFTER * 2, run_after=later
    )
    assert job_service.requeue_stale() == 0
    assert job_service.claim(job.pk) is None  # an early duplicate message waits too


# --- with a real worker ----------------------------------------------------------------


@pytest.mark.worker
def test_slow_but_alive_worker_is_not_doubled(celery_worker, settings):
    # given a stale limit shorter than the step, and a heartbeat well within it
    settings.JOB_STALE_AFTER = timedelta(seconds=1.5)
    settings.JOB_HEARTBEAT_SECONDS = 0.2
    host = HostFactory()
    RUNS.clear()
    job = queue(SLOW, host=host, params={"seconds": 4})
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    # when the beat task runs and a duplicate message arrives while the step blocks
    requeued = 0
    while Job.objects.get(pk=job.pk).status == JobStatus.RUNNING:
        requeued += job_service.requeue_stale()
        dispatch.send(dispatch.RUN_JOB, args=[job.pk], queue=host.queue)
        time.sleep(0.3)
    # then the job ran once, under its first lease, and no worker was counted lost
    job = wait_job(job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert requeued == 0
    assert [(job.pk, 1)] == RUNS
    assert (job.lease, job.attempts, job.retries) == (1, 0, 0)


@pytest.mark.worker
def test_killed_worker_is_taken_over(celery_worker, settings):
    host = HostFactory()
    RUNS.clear()
    with transaction.atomic():
        job = Job.objects.create(kind=SLOW, host=host, params={"seconds": 0}, message="Queued")
    # given a worker that claimed the job, then was killed (no heartbeat beats any more)
    dead = job_service.claim(job.pk)
    assert dead is not None
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - settings.JOB_STALE_AFTER - timedelta(seconds=1)
    )
    # when the beat task finds it, a live worker takes it over and finishes it
    assert job_service.requeue_stale() == 1
    job = wait_job(job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert [(job.pk, job.lease)] == RUNS
    assert job.lease > dead.lease and job.attempts == 1
    # and the killed worker, were it to wake up, can no longer write
    with pytest.raises(LeaseLost):
        job_service.finish(dead, status=JobStatus.FAILED, message="Failed", error="late")
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


@pytest.mark.worker
def test_unreachable_host_is_retried_with_backoff_then_fails(
    celery_worker, customer, plan, image, settings
):
    settings.JOB_MAX_RETRIES = 4
    settings.JOB_MAX_ATTEMPTS = 3  # lost workers: not what a retry counts
    settings.JOB_RETRY_BACKOFF = 0.05
    settings.JOB_RETRY_BACKOFF_MAX = 0.2
    host = HostFactory(libvirt_uri=UNREACHABLE)
    server = ServerFactory(
        customer=customer, plan=plan, image=image, host=host, state=ServerState.STOPPED
    )
    job = queue(JobKind.START, server=server)
    job = wait_job(job.pk)
    # all four retries ran (not cut short by the lost-worker limit), then it failed
    assert job.status == JobStatus.FAILED
    assert (job.retries, job.attempts) == (4, 0)
    assert "cannot reach" in job.error
    assert sum("; retry" in line for line in job.log) == 4
    assert job.lease == 5  # one claim per try
    server.refresh_from_db()
    assert server.state == ServerState.UNKNOWN


@pytest.mark.worker
def test_transient_error_then_recovery(celery_worker, settings):
    settings.JOB_MAX_RETRIES = 10
    settings.JOB_RETRY_BACKOFF = 0.3
    settings.JOB_RETRY_BACKOFF_MAX = 0.3
    host = HostFactory(libvirt_uri=UNREACHABLE, cpus=0)
    job = queue(JobKind.HOST_REFRESH, host=host)
    # when the host answers again after the first failed try
    deadline = time.monotonic() + 15
    while Job.objects.get(pk=job.pk).retries < 1:
        assert time.monotonic() < deadline, "no retry was scheduled"
        time.sleep(0.05)
    type(host).objects.filter(pk=host.pk).update(libvirt_uri="test:///default?recovered")
    job = wait_job(job.pk)
    # then a retry succeeds and the job carries its result
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.retries >= 1 and job.attempts == 0
    assert job.result["cpus"] > 0
    host.refresh_from_db()
    assert host.cpus == job.result["cpus"]


# --- start-up check --------------------------------------------------------------------


def test_start_up_check_refuses_a_step_longer_than_the_stale_limit(settings):
    settings.JOB_STALE_AFTER = timedelta(seconds=300)
    settings.SHUTDOWN_TIMEOUT = 120
    assert job_timing() == []
    settings.SHUTDOWN_TIMEOUT = 600  # a guest may take 10 minutes to shut down
    errors = job_timing()
    assert {e.id for e in errors} == {"paddock.E002"}
    assert any("stop job may block 600 s" in e.msg for e in errors)
    settings.SHUTDOWN_TIMEOUT = 120
    settings.JOB_HEARTBEAT_SECONDS = 200
    assert [e.id for e in job_timing()] == ["paddock.E001"]


def test_heartbeat_beats_while_a_step_blocks(transactional_db, settings):
    host = HostFactory()
    with transaction.atomic():
        job = Job.objects.create(kind=SLOW, host=host, message="Queued")
    claimed = job_service.claim(job.pk)
    assert claimed is not None
    first = Job.objects.get(pk=job.pk).heartbeat_at
    with job_service.Heartbeat(claimed, every=0.05) as beat:
        time.sleep(0.5)  # a blocking step: no progress written
        assert Job.objects.get(pk=job.pk).heartbeat_at > first
        # another worker takes the job over: this one's heartbeat notices
        Job.objects.filter(pk=job.pk).update(lease=claimed.lease + 1)
        beat.lost.wait(2)
        assert beat.lost.is_set()
    assert not any(t.name == f"heartbeat-job-{job.pk}" for t in threading.enumerate())
