"""The job registry: one runner per job kind, and the loop that runs a claimed job.

A runner is a function `run(ctx) -> str` (the job's final message) registered with
`@runner(kind, ...)`; it may declare `undo(ctx, error)`, called once when it fails for
good, and `longest_step`, the longest time one of its steps may block (a setting name
or seconds), which the start-up check holds against the stale limit. The runner gets a
`JobContext`: the job's params, its server and hosts, their backends, `progress()`,
`set_state()` and `result`; every write it makes through the context is checked against
the job's lease, so a worker that lost its job (and a second worker that took it over)
never both write.

To add a job kind: a `JobKind` in hosting/choices.py, a runner registered with
`@runner` in a module listed in `RUNNER_MODULES`, and (for a server action customers or
staff ask for) an entry in hosting/actions.py.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .backends import Backend, BackendError, Cancelled, get_backend
from .choices import JobStatus
from .models import Host, Job, Server
from .services import jobs as job_service
from .services.jobs import GaveUp, Heartbeat, LeaseLost

log = logging.getLogger(__name__)

# Modules whose import registers runners (loaded by HostingConfig.ready).
RUNNER_MODULES = (
    "hosting.services.operations",
    "hosting.services.hosts",
    "hosting.services.snapshots",
    "hosting.services.backups",
    "hosting.services.migration",
    "hosting.services.evacuation",
)


class Again(Exception):
    """Raised by a runner that waits on other jobs (an evacuation on its migrations): the
    job is queued again to run after `seconds`, without counting a retry, and its next run
    picks up from what it recorded in `result`. No worker waits meanwhile."""

    def __init__(self, seconds: float, message: str):
        super().__init__(message)
        self.seconds = seconds
        self.message = message


RunFn = Callable[["JobContext"], str]
UndoFn = Callable[["JobContext", BaseException], None]


@dataclass(frozen=True)
class Runner:
    kind: str
    run: RunFn
    undo: UndoFn | None = None
    # "server": the job acts on job.server (and its host); "host": on job.host alone
    subject: str = "server"
    # the longest one step may block: seconds, or the name of a setting holding them
    longest_step: int | str = 60
    # a transient error (host unreachable) is retried with backoff; False: fail at once
    retry_transient: bool = True
    # called after a final failure, e.g. to record what the hypervisor reports
    on_failure: UndoFn | None = None

    def longest_step_seconds(self) -> int:
        if isinstance(self.longest_step, str):
            return int(getattr(settings, self.longest_step))
        return self.longest_step


RUNNERS: dict[str, Runner] = {}


def runner(kind: str, **options: Any) -> Callable[[RunFn], RunFn]:
    """Register `run` as the runner of job kind `kind` (one runner per kind)."""

    def register(run: RunFn) -> RunFn:
        if kind in RUNNERS:
            raise ValueError(f"A runner for {kind!r} is registered already.")
        RUNNERS[kind] = Runner(kind=kind, run=run, **options)
        return run

    return register


def load_runners() -> None:
    for module in RUNNER_MODULES:
        importlib.import_module(module)


def get_runner(kind: str) -> Runner:
    try:
        return RUNNERS[kind]
    except KeyError:
        raise BackendError(f"No runner for job kind {kind!r}.") from None


@dataclass
class JobContext:
    """What a runner works with. Writes go through here, checked against the lease."""

    job: Job
    heartbeat: Heartbeat | None = None
    server: Server | None = None
    host: Host | None = None
    target_host: Host | None = None
    # False only for the clean-up after a job failed at claim (nobody holds it then)
    enforce_lease: bool = True
    _backends: dict[int, Backend] = field(default_factory=dict, repr=False)

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    @property
    def result(self) -> dict[str, Any]:
        return self.job.result

    def backend_for(self, host: Host | None) -> Backend:
        if host is None:
            raise BackendError("This job has no host to work on.")
        if host.pk not in self._backends:
            self._backends[host.pk] = get_backend(host)
        return self._backends[host.pk]

    @property
    def backend(self) -> Backend:
        return self.backend_for(self.host)

    @property
    def target_backend(self) -> Backend:
        return self.backend_for(self.target_host)

    def require_lease(self) -> None:
        """Inside a transaction: the job is still this worker's (see services.jobs)."""
        if self.enforce_lease:
            job_service.require_lease(self.job)

    def check_lease(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise LeaseLost(f"Job {self.job.pk} was taken over by another worker.")

    def progress(self, percent: int, message: str) -> None:
        self.check_lease()
        job_service.update_progress(self.job, percent, message)

    def set_state(self, state: str, message: str = "") -> Server:
        """Record the server's new power state, only while this worker holds the job."""
        from .services.servers import lock_server, set_state

        assert self.server is not None
        self.check_lease()
        with transaction.atomic():
            self.require_lease()
            locked = lock_server(self.server.pk)
            set_state(locked, state, message)
        self.server = locked
        return locked


def context_for(job: Job, heartbeat: Heartbeat | None = None) -> JobContext:
    """Re-read what the job acts on; a job whose server or host is gone fails clearly."""
    rule = get_runner(job.kind)
    ctx = JobContext(job=job, heartbeat=heartbeat)
    if job.target_host_id:
        ctx.target_host = Host.objects.filter(pk=job.target_host_id).first()
        if ctx.target_host is None:
            raise BackendError("The target host of this job was deleted.")
    if rule.subject == "host":
        ctx.host = Host.objects.filter(pk=job.host_id).first() if job.host_id else None
        if ctx.host is None:
            raise BackendError("The host of this job was deleted.")
        return ctx
    if job.server_id is None:
        raise BackendError("The server of this job was deleted.")
    ctx.server = Server.objects.select_related("host", "plan", "image", "customer").get(
        pk=job.server_id
    )
    ctx.host = ctx.server.host
    return ctx


def retry_delay(retries: int) -> float:
    """Exponential backoff with full jitter: half to all of base * 2^(n-1), capped."""
    base = settings.JOB_RETRY_BACKOFF * 2 ** max(0, retries - 1)
    return min(settings.JOB_RETRY_BACKOFF_MAX, base) * random.uniform(0.5, 1.0)


def run_job(job_id: int) -> str:
    """Claim the job, run its runner with a heartbeat, and record how it ended.

    Returns what happened, for the worker's log: "skipped", "succeeded", "retrying",
    "again" (it waits on other jobs), "failed" or "lost" (another worker holds it now).
    """
    try:
        job = job_service.claim(job_id)
    except GaveUp as gave_up:
        # too many workers died running it: it failed; the server takes what its host says
        _after_gave_up(gave_up.job)
        return "failed"
    if job is None:
        return "skipped"
    rule = RUNNERS.get(job.kind)
    with Heartbeat(job) as heartbeat:
        ctx: JobContext | None = None
        try:
            if rule is None:
                raise BackendError(f"No runner for job kind {job.kind!r}.")
            ctx = context_for(job, heartbeat)
            message = rule.run(ctx)
            ctx.check_lease()
        except LeaseLost:
            log.warning("job %s: lease %s lost; the new holder carries on", job_id, job.lease)
            return "lost"
        except Again as again:
            return _again(job, again)
        except Cancelled as exc:  # asked to stop: undone like a failure, recorded as cancelled
            return _fail(job, rule, ctx, exc, exc.message, status=JobStatus.CANCELLED)
        except BackendError as exc:
            if (
                exc.transient
                and rule is not None
                and rule.retry_transient
                and job.retries < settings.JOB_MAX_RETRIES
            ):
                return _retry(job, exc)
            return _fail(job, rule, ctx, exc, exc.message)
        except Exception as exc:
            log.exception("job %s crashed", job_id)
            return _fail(job, rule, ctx, exc, f"Internal error: {exc}")
        try:
            job_service.finish(job, status=JobStatus.SUCCEEDED, message=message)
        except LeaseLost:
            return "lost"
        return "succeeded"


def _after_gave_up(job: Job) -> None:
    """A job failed at claim (too many workers died running it): its server takes what
    its host says, as after any failure."""
    rule = RUNNERS.get(job.kind)
    if rule is None or rule.on_failure is None:
        return
    try:
        ctx = context_for(job)
        ctx.enforce_lease = False  # nobody holds a failed job
        rule.on_failure(ctx, BackendError(job.error))
    except Exception:
        log.exception("job %s: recording the failure failed", job.pk)


def _retry(job: Job, exc: BackendError) -> str:
    delay = retry_delay(job.retries + 1)
    try:
        job_service.schedule_retry(
            job,
            run_after=timezone.now() + timedelta(seconds=delay),
            message=f"{exc.message}; retry {job.retries + 1} of "
            f"{settings.JOB_MAX_RETRIES} in {delay:.1f} s",
        )
    except LeaseLost:
        return "lost"
    return "retrying"


def _again(job: Job, again: Again) -> str:
    try:
        job_service.schedule_retry(
            job,
            run_after=timezone.now() + timedelta(seconds=again.seconds),
            message=again.message,
            count=False,
        )
    except LeaseLost:
        return "lost"
    return "again"


def _after_failure(rule: Runner | None, ctx: JobContext | None, exc: BaseException) -> None:
    """Undo what the runner left, then record what the hypervisor says (best effort)."""
    if rule is None or ctx is None:
        return
    for hook in (rule.undo, rule.on_failure):
        if hook is None:
            continue
        try:
            hook(ctx, exc)
        except Exception:  # the original error is the one to report
            log.exception("job %s: %s after the failure failed", ctx.job.pk, hook.__name__)


def _fail(
    job: Job,
    rule: Runner | None,
    ctx: JobContext | None,
    exc: BaseException,
    error: str,
    *,
    status: str = JobStatus.FAILED,
) -> str:
    try:
        with transaction.atomic():
            job_service.require_lease(job)
    except LeaseLost:
        return "lost"
    _after_failure(rule, ctx, exc)
    try:
        job_service.finish(job, status=status, message=status.capitalize(), error=error)
    except LeaseLost:
        return "lost"
    return "failed" if status == JobStatus.FAILED else str(status)
