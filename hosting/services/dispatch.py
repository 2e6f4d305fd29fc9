"""Sending work to the workers by task name: the services never import the workers
package (workers/tasks.py imports the services), so the dependency points one way."""

from __future__ import annotations

from config.celery import app

RUN_JOB = "workers.tasks.run_job"
FETCH_CONSOLE = "workers.tasks.fetch_console"
SET_BANDWIDTH = "workers.tasks.set_server_bandwidth"


def send(
    task: str,
    *,
    args: list,
    queue: str,
    countdown: float | None = None,
    expires: float | None = None,
) -> None:
    app.send_task(task, args=args, queue=queue, countdown=countdown, expires=expires)
