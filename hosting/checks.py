"""System checks run at start-up (`manage.py check`, runserver, migrate, each worker)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from .runners import RUNNERS


@register("paddock")
def job_timing(app_configs=None, **kwargs) -> list[Error]:
    """A step that may block longer than the stale limit would look like a lost worker if
    its heartbeat ever stopped; and the heartbeat must beat well within that limit."""
    stale = settings.JOB_STALE_AFTER.total_seconds()
    errors = []
    if stale < settings.JOB_HEARTBEAT_SECONDS * 3:
        errors.append(
            Error(
                f"JOB_HEARTBEAT_SECONDS ({settings.JOB_HEARTBEAT_SECONDS:g} s) must be at most "
                f"a third of JOB_STALE_AFTER ({stale:g} s).",
                id="paddock.E001",
            )
        )
    for kind, rule in sorted(RUNNERS.items()):
        seconds = rule.longest_step_seconds()
        if seconds >= stale:
            where = f" (setting {rule.longest_step})" if isinstance(rule.longest_step, str) else ""
            errors.append(
                Error(
                    f"A step of the {kind} job may block {seconds} s{where}, not less than "
                    f"JOB_STALE_AFTER ({stale:g} s).",
                    hint="Raise JOB_STALE_AFTER or shorten the step's timeout.",
                    id="paddock.E002",
                )
            )
    return errors
