import logging
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("paddock")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@worker_init.connect
def check_before_work(**kwargs) -> None:
    """A worker refuses to start with settings that would let a job run twice."""
    from django.core.checks import run_checks

    errors = run_checks(tags=["paddock"])
    if errors:
        raise RuntimeError("; ".join(e.msg for e in errors))


# Tasks that run every few seconds (a collector pass per host, and beat's tick queuing
# them): their "received" / "succeeded" / "sending due task" lines would bury everything
# else in a worker's log, so they are dropped below WARNING. Failures still show.
FREQUENT_TASKS = ("workers.tasks.collect_stats", "workers.tasks.collect_host_stats")


class FrequentTaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        return not any(name in message for name in FREQUENT_TASKS)


for _name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
    logging.getLogger(_name).addFilter(FrequentTaskFilter())
