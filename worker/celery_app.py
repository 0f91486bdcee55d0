"""The Celery application: Redis carries job ids, PostgreSQL decides who runs them.

Start one worker per GPU, each running one job at a time:

    celery -A worker.celery_app worker --pool=solo --concurrency=1 --hostname=gpu0@%h

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
import uuid
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from .reaper import Reaper
from .settings import Settings, get_settings

RUN_JOB_TASK = "netgrow.run_job"

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Celery:
    app = Celery("netgrow", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            "unacked_restore_interval": settings.redelivery_scan_seconds,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        # A lost broker connection must not abort hours of training: the job's state is in the database.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    return app


@lru_cache
def app_for(broker_url: str) -> Celery:
    """A producer-side app per broker URL (the API process may be configured after import)."""
    return create_app(get_settings().model_copy(update={"broker_url": broker_url}))


def send_run_job(job_id: uuid.UUID, settings: Settings | None = None) -> None:
    """Put ``job_id`` on the queue; the message carries nothing else."""
    settings = settings or get_settings()
    if settings.broker_url is None:
        raise RuntimeError("NETGROW_BROKER_URL is not set: jobs run in the embedded runner (worker.queue.enqueue)")
    app_for(settings.broker_url).send_task(RUN_JOB_TASK, args=[str(job_id)], queue=settings.queue)


def queue_depth(settings: Settings | None = None) -> int:
    """Job ids waiting in the broker's queue (not counting the ones workers hold)."""
    settings = settings or get_settings()
    if settings.broker_url is None:
        raise RuntimeError("NETGROW_BROKER_URL is not set: there is no broker queue in embedded mode")
    with app_for(settings.broker_url).connection_for_read() as connection:
        return connection.default_channel.queue_declare(queue=settings.queue, passive=False).message_count


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
