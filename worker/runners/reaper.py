"""The reaper: gives jobs whose worker died (lease expired) a new attempt, or fails them, and
sends again the ids of queued jobs whose message the broker may have lost.

It runs as a daemon thread in every Celery worker and in the embedded runner.
Several reapers may run at once; every move is a conditional UPDATE
(``jobs.reap_expired_leases``, ``jobs.claim_resend``), so only one of them
re-queues or re-sends a given job in a given period.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from worker.store import jobs
from worker.store.session import database_now, session_factory
from worker.store.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Scan(jobs.Reaped):
    """What one reaper scan did: the expired leases it moved, and the job ids it sent again."""

    resent: list[uuid.UUID] = field(default_factory=list)  # queued jobs sent again (a lost message?)
    unsent: list[uuid.UUID] = field(default_factory=list)  # jobs whose send failed; the next scan retries


def reap_once(settings: Settings, requeue: Callable[[uuid.UUID], None]) -> Scan:
    """One scan: move every expired job, then send again the queued jobs not sent for a while.

    ``requeue`` sends a job id (Celery) or wakes the runner (embedded). The
    second step runs only with a broker: in embedded mode the queue is the jobs
    table, which the runner polls, so there is no message to lose.
    """
    sessions = session_factory(settings.database_url)
    with sessions() as session:
        reaped = jobs.reap_expired_leases(session)
    scan = Scan(requeued=reaped.requeued, failed=reaped.failed, canceled=reaped.canceled)
    for job_id in scan.failed:
        log.warning("job %s: worker lost and no attempts left; marked failed", job_id)
    for job_id in scan.requeued:
        log.warning("job %s: worker lost; re-queued to resume from its last checkpoint", job_id)
    broker_up = _send_all(sessions, scan.requeued, requeue, scan)
    if broker_up and not settings.embedded:
        with sessions() as session:
            sent_before = database_now(session) - timedelta(seconds=settings.requeue_after_seconds)
            stale = jobs.queued_jobs_to_resend(session, sent_before=sent_before)
            claimed = [job_id for job_id in stale if jobs.claim_resend(session, job_id, sent_before=sent_before)]
        for job_id in claimed:
            # Info, not a warning: a job waiting behind busy workers lands here once per period too.
            log.info("job %s: still queued %.0fs after its id was last sent (or its send failed); sending it again",
                     job_id, settings.requeue_after_seconds)
        _send_all(sessions, claimed, requeue, scan, resent=True)
    return scan


def _send_all(sessions: sessionmaker[Session], job_ids: list[uuid.UUID], requeue: Callable[[uuid.UUID], None],
              scan: Scan, *, resent: bool = False) -> bool:
    """Send each job id; at the first failure mark it and the rest unsent and return False (the broker is down)."""
    for position, job_id in enumerate(job_ids):
        try:
            requeue(job_id)
        except Exception:  # the job stays queued in the database; the next scan sends it
            log.exception("job %s: queued in the database but could not be sent; retrying at the next scan", job_id)
            # Trying the others now would only wait out the same broker timeout once per job.
            with sessions() as session:
                for unsent in job_ids[position:]:
                    jobs.mark_unsent(session, unsent)
            scan.unsent.extend(job_ids[position:])
            return False
        if resent:
            scan.resent.append(job_id)
    return True


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
