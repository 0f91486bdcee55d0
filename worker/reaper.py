"""The reaper: gives jobs whose worker died (lease expired) a new attempt, or fails them.

It runs as a daemon thread in every Celery worker and in the embedded runner.
Several reapers may run at once; ``crud.reap_expired_leases`` moves each job
with a conditional UPDATE, so only one of them re-queues (and re-sends) it.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from . import crud
from .db.session import session_factory
from .settings import Settings

log = logging.getLogger(__name__)


def reap_once(settings: Settings, requeue: Callable[[uuid.UUID], None]) -> crud.Reaped:
    """One scan: move every expired job and call ``requeue`` for each job put back in the queue."""
    with session_factory(settings.database_url)() as session:
        reaped = crud.reap_expired_leases(session)
    for job_id in reaped.failed:
        log.warning("job %s: worker lost and no attempts left; marked failed", job_id)
    for job_id in reaped.requeued:
        log.warning("job %s: worker lost; re-queued to resume from its last checkpoint", job_id)
        try:
            requeue(job_id)
        except Exception:  # the job stays queued in the database; a later enqueue or restart picks it up
            log.exception("job %s: re-queued in the database but could not be sent", job_id)
    return reaped


class Reaper:
    """Calls ``reap_once`` every ``settings.reaper_seconds`` on a daemon thread until ``stop()``."""

    def __init__(self, settings: Settings, requeue: Callable[[uuid.UUID], None]) -> None:
        self._settings = settings
        self._requeue = requeue
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="netgrow-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self._settings.reaper_seconds):
            try:
                reap_once(self._settings, self._requeue)
            except Exception:  # a database hiccup must not end the thread
                log.exception("reaper scan failed")
