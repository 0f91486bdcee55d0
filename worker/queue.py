"""``enqueue(job_id)``: what the API calls after storing a job, in either deployment shape."""
from __future__ import annotations

import uuid

from .settings import Settings, get_settings


def enqueue(job_id: uuid.UUID, settings: Settings | None = None) -> None:
    """Hand a committed, queued job to whoever runs jobs here.

    Distributed: send its id to the Celery queue. Embedded: wake this process's
    runner; without a running one the job waits in the jobs table until one starts.
    """
    settings = settings or get_settings()
    if settings.embedded:
        from .embedded import current_runner

        runner = current_runner()
        if runner is not None:
            runner.wake(job_id)
        return
    from .celery_app import send_run_job

    send_run_job(job_id, settings)
