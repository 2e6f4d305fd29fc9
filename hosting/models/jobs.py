from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models

from ..choices import ACTIVE_JOB_STATUSES, JobKind, JobStatus
from ..querysets import JobQuerySet
from .hosts import Host
from .servers import Server


class Job(models.Model):
    """The public contract for asynchronous work: what, how far, how it ended, who asked."""

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    message = models.CharField(max_length=300, blank=True, default="")
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    server = models.ForeignKey(
        Server, on_delete=models.CASCADE, related_name="jobs", null=True, blank=True
    )
    host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, related_name="jobs", null=True, blank=True
    )
    # the second host a job touches: a migration's target (a backup's store comes later)
    target_host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, related_name="target_jobs", null=True, blank=True
    )
    # what the job was asked (its runner's input) and what it produced (its output)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # the provider asked a running job to stop (a migration aborts; the guest stays put)
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    requested_via_token = models.ForeignKey(
        "hosting.APIToken", on_delete=models.SET_NULL, null=True, blank=True
    )
    # workers lost while running this job (not retries after transient errors)
    attempts = models.PositiveSmallIntegerField(default=0)
    # retries after a transient error (host unreachable), each after a backoff
    retries = models.PositiveSmallIntegerField(default=0)
    # the lease: raised by every claim; a worker writes only while it holds the current one
    lease = models.PositiveIntegerField(default=0)
    # a retry's earliest start: a queued job is not stale before this
    run_after = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["server"],
                condition=models.Q(status__in=ACTIVE_JOB_STATUSES),
                name="one_active_job_per_server",
                violation_error_message="This server already has a job in progress.",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="job_progress_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES
