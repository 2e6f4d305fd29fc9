"""The worker's log keeps jobs and failures, not a line per collector pass."""

from __future__ import annotations

import logging

import config.celery  # noqa: F401  (installs the filters)


def test_frequent_tasks_stay_out_of_the_log_unless_they_fail(caplog):
    trace = logging.getLogger("celery.app.trace")
    with caplog.at_level(logging.INFO):
        trace.info("Task workers.tasks.collect_host_stats[1] succeeded in 0.01s: {}")
        logging.getLogger("celery.beat").info(
            "Scheduler: Sending due task collect-stats (workers.tasks.collect_stats)"
        )
        trace.info("Task workers.tasks.run_job[2] succeeded in 3.2s: 'succeeded'")
        trace.error("Task workers.tasks.collect_host_stats[3] raised unexpected: OSError()")
    assert [r.getMessage() for r in caplog.records] == [
        "Task workers.tasks.run_job[2] succeeded in 3.2s: 'succeeded'",
        "Task workers.tasks.collect_host_stats[3] raised unexpected: OSError()",
    ]
