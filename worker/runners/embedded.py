"""Embedded mode: jobs run one at a time in a background thread of this process.

Used when ``NETGROW_BROKER_URL`` is unset (``netgrow serve`` on a workstation).
The queue is the jobs table itself: the runner takes the oldest queued job, so
a job submitted while no runner was up, or handed back at shutdown, runs when
the next runner starts. It runs jobs through the same ``worker.runners.attempt.run_job``
as a Celery worker, and a reaper thread re-queues a job whose lease expired
(the process died while running it).
"""
from __future__ import annotations

import logging
import socket
import threading
import uuid

from worker.store import dispatch, jobs
from worker.store.session import session_factory
from worker.store.settings import Settings, get_settings

from .attempt import run_job
from .reaper import Reaper

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0  # also catches jobs queued by another process (the CLI) sharing the database


class EmbeddedRunner:
    def __init__(self, settings: Settings, worker_name: str | None = None) -> None:
        self.settings = settings
        self.worker_name = worker_name or f"embedded@{socket.gethostname()}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="netgrow-embedded-runner", daemon=True)
        self._reaper = Reaper(settings, self.wake)

    def start(self) -> EmbeddedRunner:
        self._thread.start()
        self._reaper.start()
        return self

    def wake(self, job_id: uuid.UUID | None = None) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the running job reaches a batch boundary; that job goes back to the queue."""
        self._stopping.set()
        self._wake.set()
        self._reaper.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        sessions = session_factory(self.settings.database_url)
        while not self._stopping.is_set():
            try:
                with sessions() as session:
                    job_id = jobs.next_queued_job(session)
                if job_id is not None:
                    run_job(job_id, worker_name=self.worker_name, settings=self.settings,
                            process_stopping=self._stopping.is_set)
                    continue
            except Exception:  # keep serving: the failing job is already marked, or its lease will expire
                log.exception("embedded runner: unexpected error")
            self._wake.wait(IDLE_POLL_SECONDS)
            self._wake.clear()


_start_lock = threading.Lock()


def start_embedded(settings: Settings | None = None) -> EmbeddedRunner:
    """Start this process's runner and register it with the store's dispatch (``enqueue`` wakes it); idempotent.

    The API and ``netgrow serve`` reach this through ``dispatch.start_in_process_runner``.
    """
    with _start_lock:
        runner = dispatch.in_process_runner()
        if isinstance(runner, EmbeddedRunner) and runner.running:
            return runner
        runner = EmbeddedRunner(settings or get_settings()).start()
        dispatch.register_in_process_runner(runner)
        return runner


def stop_embedded(timeout: float | None = 30.0) -> None:
    """Stop this process's runner; the running job goes back to the queue."""
    dispatch.stop_in_process_runner(timeout)
