"""Template helpers of the panel: state badges, job badges, durations."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from hosting.choices import JobStatus, ServerState

register = template.Library()

STATE_ICONS: dict[str, str] = {
    ServerState.PENDING: "hourglass-split",
    ServerState.PROVISIONING: "gear-wide-connected",
    ServerState.RUNNING: "circle-fill",
    ServerState.STOPPED: "stop-circle",
    ServerState.PAUSED: "pause-circle",
    ServerState.SUSPENDED: "slash-circle",
    ServerState.ERROR: "exclamation-octagon",
    ServerState.TERMINATING: "trash3",
    ServerState.TERMINATED: "x-circle",
}
JOB_ICONS: dict[str, str] = {
    JobStatus.QUEUED: "clock",
    JobStatus.RUNNING: "arrow-repeat",
    JobStatus.SUCCEEDED: "check-circle-fill",
    JobStatus.FAILED: "x-octagon-fill",
    JobStatus.CANCELLED: "dash-circle",
}


@register.simple_tag
def state_badge(state: str, live: bool = False):
    """A server state as a badge; `live` marks the one paddock.js keeps up to date."""
    label = ServerState(state).label if state in ServerState.values else state
    return format_html(
        '<span class="badge state-badge" data-state="{}"{}><i class="bi bi-{}"></i> '
        '<span class="state-label">{}</span></span>',
        state,
        mark_safe(' data-role="server-state"') if live else "",
        STATE_ICONS.get(state, "question-circle"),
        label,
    )


@register.simple_tag
def job_badge(status: str):
    label = JobStatus(status).label if status in JobStatus.values else status
    return format_html(
        '<span class="badge job-badge" data-status="{}"><i class="bi bi-{}"></i> {}</span>',
        status,
        JOB_ICONS.get(status, "question-circle"),
        label,
    )


@register.filter
def duration(job) -> str:
    """How long a job ran: '1.2 s', '3 min 4 s'; empty while it has not started."""
    if job.started_at is None or job.finished_at is None:
        return ""
    seconds = (job.finished_at - job.started_at).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s"


@register.filter
def mib(value: int) -> str:
    """Memory for people: 512 MiB, 2 GiB, 1.5 GiB."""
    if value is None:
        return ""
    if value >= 1024:
        gib = value / 1024
        return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"
    return f"{value} MiB"
