"""``enqueue(job_id)``: what the API calls after storing a job, in either deployment shape."""
from __future__ import annotations

import logging
import uuid

from . import crud
from .db.session import session_factory
from .settings import Settings, get_settings

log = logging.getLogger(__name__)


def enqueue(job_id: uuid.UUID, settings: Settings | None = None) -> None:
    """Hand a committed, queued job to whoever runs jobs here.

    Distributed: send its id to the Celery queue. If that fails (the broker is
    down) the job is marked unsent and the exception propagates; the job stays
    queued in the database and the next reaper scan with a reachable broker
    sends it (``worker.reaper``). Embedded: wake this process's runner; without
    a running one the job waits in the jobs table until one starts.
    """
    settings = settings or get_settings()
    if settings.embedded:
        from .embedded import current_runner

        runner = current_runner()
        if runner is not None:
            runner.wake(job_id)
        return
    from .celery_app import send_run_job

    try:
        send_run_job(job_id, settings)
    except Exception:
        _mark_unsent(job_id, settings)
        raise


def _mark_unsent(job_id: uuid.UUID, settings: Settings) -> None:
    try:
        with session_factory(settings.database_url)() as session:
            crud.mark_unsent(session, job_id)
    except Exception:  # the broker error is the one to report; the reaper still re-sends after a period
        log.exception("job %s: could not record that its send failed", job_id)
