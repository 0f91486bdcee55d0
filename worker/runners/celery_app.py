"""The Celery application: Redis carries job ids, PostgreSQL decides who runs them.

Start one worker per GPU, each running one job at a time:

    celery -A worker.runners.celery_app worker --pool=solo --concurrency=1 --hostname=gpu0@%h

``--pool=solo`` runs the task in the worker's main process (no fork after CUDA
is initialised) and prefetch 1 leaves the next job id in Redis for a free GPU.
Messages are acknowledged after the task (``acks_late``); Redis re-delivers
an unacknowledged one after ``visibility_timeout``, and the database claim
turns such a re-delivery into a no-op. Every worker also runs the reaper.

On SIGTERM (``docker compose stop``) the running job stops at its next batch
boundary and goes back to the queue, to resume on the next free worker from
its last checkpoint, instead of holding the shutdown until the job is over.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from worker.store.dispatch import celery_config, send_run_job
from worker.store.settings import Settings, get_settings

from .reaper import Reaper

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Celery:
    """The worker's Celery app: the store's shared settings plus the task module."""
    app = Celery("netgrow", broker=settings.broker_url, include=["worker.runners.tasks"])
    app.conf.update(celery_config(settings))
    return app


app = create_app(get_settings())

_reaper: Reaper | None = None
_shutting_down = threading.Event()


def worker_shutting_down_requested() -> bool:
    """True once this worker process was asked to shut down (polled by the running job)."""
    return _shutting_down.is_set()


@worker_init.connect
def _require_broker(**_: Any) -> None:
    if get_settings().broker_url is None:
        raise RuntimeError("set NETGROW_BROKER_URL (e.g. redis://localhost:6379/0) to run a Celery worker")


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    global _reaper
    settings = get_settings()
    _reaper = Reaper(settings, lambda job_id: send_run_job(job_id, settings)).start()
    log.info("reaper started (every %.1fs, lease %.1fs)", settings.reaper_seconds, settings.lease_seconds)


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop(timeout=5)


@worker_shutting_down.connect
def _hand_back_running_job(**_: Any) -> None:
    _shutting_down.set()
