"""The one Celery task: run a job, given only its id."""
from __future__ import annotations

import socket
import uuid

from .celery_app import RUN_JOB_TASK, app
from .jobs import run_job


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """Returns the outcome (``succeeded``, ``skipped``, ...), which Celery logs; no result backend is used."""
    worker_name = self.request.hostname or socket.gethostname()
    return run_job(uuid.UUID(job_id), worker_name=worker_name).value
