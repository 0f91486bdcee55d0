"""Handing a stored job to whoever runs jobs, without importing the runners.

Distributed: the job's id goes to the Celery queue by task name
(``RUN_JOB_TASK``) through a producer-only Celery app; the worker processes
(``worker.runners.celery_app``) hold the task. Embedded: the in-process
runner registers itself here when it starts (``register_in_process_runner``),
and ``enqueue`` wakes it. The API and the CLI start that runner by its import
path (``IN_PROCESS_RUNNER``), the way a Celery worker loads its tasks by name,
so neither they nor this store import training code.
"""
from __future__ import annotations

import logging
import pkgutil
import threading
import uuid
from functools import lru_cache
from typing import Any, Protocol

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError

from . import jobs
from .session import session_factory
from .settings import Settings, get_settings

log = logging.getLogger(__name__)

RUN_JOB_TASK = "netgrow.run_job"
IN_PROCESS_RUNNER = "worker.runners.embedded:start_embedded"


class InProcessRunner(Protocol):
    """What the store needs of a runner living in this process (``worker.runners.embedded``)."""

    worker_name: str

    def wake(self, job_id: uuid.UUID | None = None) -> None: ...

    def stop(self, timeout: float | None = None) -> None: ...


_in_process: InProcessRunner | None = None
_in_process_lock = threading.Lock()


def register_in_process_runner(runner: InProcessRunner | None) -> InProcessRunner | None:
    """Make ``runner`` the one ``enqueue`` wakes (None: there is none); returns the one it replaces."""
    global _in_process
    with _in_process_lock:
        previous, _in_process = _in_process, runner
    return previous


def in_process_runner() -> InProcessRunner | None:
    return _in_process


def start_in_process_runner(settings: Settings) -> InProcessRunner:
    """Start this process's runner (embedded mode); it registers itself. Idempotent."""
    start = pkgutil.resolve_name(IN_PROCESS_RUNNER)
    return start(settings)


def stop_in_process_runner(timeout: float | None = 30.0) -> None:
    """Stop and unregister this process's runner; its running job goes back to the queue."""
    runner = register_in_process_runner(None)
    if runner is not None:
        runner.stop(timeout)


def enqueue(job_id: uuid.UUID, settings: Settings | None = None, queue: str | None = None) -> None:
    """Hand a committed, queued job to whoever runs jobs here.

    Distributed: send its id to the Celery queue. If that fails (the broker is
    down) the job is marked unsent and the exception propagates; the job stays
    queued in the database and the next reaper scan with a reachable broker
    sends it (``worker.runners.reaper``). Embedded: wake this process's runner;
    without a running one the job waits in the jobs table until one starts.
    """
    settings = settings or get_settings()
    if settings.embedded:
        runner = _in_process
        if runner is not None:
            runner.wake(job_id)
        return
    try:
        send_run_job(job_id, settings, queue)  # queue: the job's own when the caller has it at hand
    except Exception:
        _mark_unsent(job_id, settings)
        raise


def _mark_unsent(job_id: uuid.UUID, settings: Settings) -> None:
    try:
        with session_factory(settings.database_url)() as session:
            jobs.mark_unsent(session, job_id)
    except Exception:  # the broker error is the one to report; the reaper still re-sends after a period
        log.exception("job %s: could not record that its send failed", job_id)


# --------------------------------------------------------------------------- the broker


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings producers and workers share (``worker.runners.celery_app`` adds the task module)."""
    return dict(
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


@lru_cache
def producer_for(broker_url: str) -> Celery:
    """A producer-side app per broker URL (the API process may be configured after import); it holds no tasks."""
    settings = get_settings().model_copy(update={"broker_url": broker_url})
    producer = Celery("netgrow", broker=broker_url)
    producer.conf.update(celery_config(settings))
    return producer


def send_run_job(job_id: uuid.UUID, settings: Settings | None = None, queue: str | None = None) -> None:
    """Put ``job_id`` on its queue; the message carries nothing else.

    ``queue``: the job's own (``jobs.queue``), looked up when not given, so a
    re-send by any worker's reaper goes to the pool the job was sent to; this
    process's ``NETGROW_QUEUE`` only for jobs stored without one.
    """
    settings = settings or get_settings()
    if settings.broker_url is None:
        raise RuntimeError("NETGROW_BROKER_URL is not set: jobs run in the embedded runner (enqueue wakes it)")
    if queue is None:
        try:
            with session_factory(settings.database_url)() as session:
                queue = jobs.job_queue(session, job_id)
        except SQLAlchemyError:  # a worker handing its job back during an outage: its own pool is the best guess
            log.warning("job %s: the database did not say which queue the job belongs to; sending it to %s",
                        job_id, settings.queue)
    producer_for(settings.broker_url).send_task(RUN_JOB_TASK, args=[str(job_id)], queue=queue or settings.queue)


def queue_depth(settings: Settings | None = None) -> int:
    """Job ids waiting in the broker's queue (not counting the ones workers hold)."""
    settings = settings or get_settings()
    if settings.broker_url is None:
        raise RuntimeError("NETGROW_BROKER_URL is not set: there is no broker queue in embedded mode")
    with producer_for(settings.broker_url).connection_for_read() as connection:
        return connection.default_channel.queue_declare(queue=settings.queue, passive=False).message_count
