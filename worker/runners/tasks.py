"""The one Celery task: run a job, given only its id."""
from __future__ import annotations

import socket
import uuid

from worker.store.dispatch import RUN_JOB_TASK, send_run_job

from .attempt import Outcome, run_job
from .celery_app import app, worker_shutting_down_requested


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """Returns the outcome (``succeeded``, ``skipped``, ...), which Celery logs; no result backend is used."""
    worker_name = self.request.hostname or socket.gethostname()
    outcome = run_job(uuid.UUID(job_id), worker_name=worker_name, process_stopping=worker_shutting_down_requested)
    if outcome == Outcome.RELEASED:
        send_run_job(uuid.UUID(job_id))  # this worker is stopping: the job goes to the next free one
    return outcome.value
