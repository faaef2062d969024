"""The only APScheduler user: timed jobs around callables it is given.

Jobs never touch the service's state themselves: closing windows and checkpointing are *requests* the
service carries out between batches; reloading and retraining prepare a new scorer off the main thread and
hand it over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


def start_jobs(config: Any, request_close_check: Callable[[], None], request_checkpoint: Callable[[], None],
               check_for_new_bundle: Callable[[], None] | None = None,
               retrain: Callable[[], None] | None = None) -> BackgroundScheduler:
    """Start the service's periodic jobs; call ``shutdown(wait=False)`` on the result to stop them."""
    # coalesce + one instance: a job that falls behind (a long retrain) runs once, not in a burst.
    scheduler = BackgroundScheduler(timezone=timezone.utc,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(request_close_check, "interval", seconds=config.window.close_check_seconds,
                      id="close-windows", name="close due windows by the wall clock")
    scheduler.add_job(request_checkpoint, "interval", seconds=config.state.checkpoint_interval_seconds,
                      id="checkpoint", name="checkpoint windows and offsets")
    if check_for_new_bundle is not None and config.reload.check_interval_seconds > 0:
        scheduler.add_job(check_for_new_bundle, "interval", seconds=config.reload.check_interval_seconds,
                          id="reload-model", name="load a newly published model bundle")
    if retrain is not None and config.retrain.enabled:
        scheduler.add_job(retrain, "interval", hours=config.retrain.interval_hours, id="retrain",
                          name="retrain on recent normal records")
    scheduler.start()
    log.debug("scheduled jobs: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    return scheduler
