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
