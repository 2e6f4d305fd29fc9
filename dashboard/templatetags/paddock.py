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
    ServerState.ERROR: "exclamation-octagon",
    ServerState.UNKNOWN: "question-circle",
    ServerState.MIGRATING: "arrow-left-right",
    ServerState.TERMINATING: "trash3",
    ServerState.TERMINATED: "x-circle",
    # not a power state: the provider's suspension, shown instead of it (display_state)
    "suspended": "slash-circle",
}
STATE_LABELS: dict[str, str] = {**dict(ServerState.choices), "suspended": "Suspended"}
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
    label = STATE_LABELS.get(state, state)
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


@register.simple_tag
def viewer_text(value: str, obj, staff: bool) -> str:
    """An error or state message as the viewer may read it: the full text for staff,
    customer_message() of it (the object's host hidden too) for customers."""
    if staff:
        return value
    from hosting.services.public_messages import customer_message

    host = getattr(obj, "host", None)
    return customer_message(value, hosts=[host.name] if host is not None else [])


@register.simple_tag
def requester(job, staff: bool) -> str:
    """Who asked for a job: the username for staff; for customers, their own team's
    usernames, and "provider" for anyone on the provider's side (no staff names)."""
    user = job.requested_by
    if user is None:
        return "system"
    if staff or not user.is_staff:
        return user.get_username()
    return "provider"
