"""Running one job: claim, heartbeat, train with growth.run, record every epoch, finish.

``run_job`` is the single code path behind the Celery task (``worker.runners.tasks``)
and the embedded runner (``worker.runners.embedded``). The database decides who runs a
job (``worker.store.jobs.claim_job``), so a message delivered twice runs the job once; a
resumed attempt continues from the job's last checkpoint, and the epochs
recorded after that checkpoint are recorded again (the claim forgets them).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import growth
from growth.errors import Interrupted, SpecError
from growth.events import ArchitectureChanged, EpochEnd, Event

from worker.store import artifacts
from worker.store import jobs as jobs_store
from worker.store.datasets import localize_job_spec
from worker.store.models import Job, JobStatus
from worker.store.session import session_factory
from worker.store.settings import Settings, get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(StrEnum):
    """How ``run_job`` ended, from this worker's point of view (the Celery task's return value)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    RELEASED = "released"  # handed back to the queue because this process is stopping
    LOST = "lost"  # the lease went to someone else (or the reaper); this worker stopped writing
    SKIPPED = "skipped"  # not claimable: running elsewhere, finished, cancelled or out of attempts
    ABANDONED = "abandoned"  # the database failed mid-run; the lease runs out and the reaper retries the job


class LeaseLost(Exception):
    """This attempt no longer holds the job; raised from the event handler to stop the run."""


class Heartbeat:
    """A thread that renews the lease every ``interval`` seconds and learns about cancel requests.

    ``should_stop`` is what growth polls at batch boundaries: True once a cancel
    was requested, the lease was lost, or the hosting process asked to stop.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: uuid.UUID, lease_owner: str, *,
                 lease_seconds: float, interval: float, process_stopping: Callable[[], bool] | None = None) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._lease_owner = lease_owner
        self._lease_seconds = lease_seconds
        self._interval = interval
        self._process_stopping = process_stopping or (lambda: False)
        self._done = threading.Event()
        self._finalising = threading.Event()
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def finalising(self) -> None:
        """The run is over and its final state is being written; the lease is still renewed meanwhile.

        Once that write commits, the lease reads as lost: expected then, so it is not logged as a warning.
        """
        self._finalising.set()

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.lost.is_set() or self._process_stopping()

    def _beat(self) -> None:
        while not self._done.wait(self._interval):
            try:
                with self._sessions() as session:
                    cancel = jobs_store.renew_lease(session, self._job_id, lease_owner=self._lease_owner,
                                              lease_seconds=self._lease_seconds)
            except Exception:  # the database may come back before the lease runs out; keep trying
                log.exception("job %s: could not renew the lease", self._job_id)
                continue
            if cancel is None:
                if not self._finalising.is_set():
                    log.warning("job %s: lease lost; stopping at the next batch boundary", self._job_id)
                self.lost.set()
                return
            if cancel:
                self.cancel_requested.set()


class EpochRecorder:
    """The ``on_event`` handler: each epoch commits with the architecture changes made at its end.

    Changes are held back until their epoch is recorded, so a run that dies in
    between and resumes from the previous checkpoint reports them exactly once.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: uuid.UUID, lease_owner: str,
                 lease_seconds: float, database_wait_seconds: float | None = None) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._lease_owner = lease_owner
        self._lease_seconds = lease_seconds
        self._database_wait_seconds = database_wait_seconds
        self._pending: list[ArchitectureChanged] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, ArchitectureChanged):
            self._pending.append(event)
        elif isinstance(event, EpochEnd):
            def record() -> bool:
                with self._sessions() as session:
                    return jobs_store.record_epoch(session, self._job_id, lease_owner=self._lease_owner,
                                             lease_seconds=self._lease_seconds, epoch=event, changes=self._pending)

            recorded = until_database_answers(record, what=f"job {self._job_id}: epoch {event.epoch}",
                                              give_up_after=self._database_wait_seconds)
            if not recorded:
                raise LeaseLost(f"job {self._job_id}: lease lost before epoch {event.epoch} was recorded")
            self._pending = []


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for as long as this attempt would wait (or the process is stopping)."""


def until_database_answers(action: Callable[[], T], *, what: str, give_up_after: float | None,
                           stopping: Callable[[], bool] = lambda: False) -> T:
    """``action()``, repeated while the database is unreachable; ``DatabaseUnavailable`` after ``give_up_after`` s.

    A worker that cannot reach PostgreSQL can do nothing useful: it must neither
    take queued messages it cannot claim (Celery would acknowledge them, and the
    jobs would wait for the reaper's re-send) nor drop a trained epoch because a
    write failed for a few seconds. Every write re-checks the lease, so a write
    retried after the lease ran out is refused, not applied twice.
    """
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            return action()
        except (OperationalError, InterfaceError) as exc:
            waited = time.monotonic() - started
            if stopping() or (give_up_after is not None and waited >= give_up_after):
                raise DatabaseUnavailable(f"{what}: the database is unreachable ({type(exc.orig).__name__})") from exc
            log.warning("%s: the database is unreachable (%s); retrying in %.1fs", what, type(exc.orig).__name__,
                        delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


def new_lease_owner(worker_name: str) -> str:
    """A token unique to one attempt: a restarted worker with the same name must not inherit a lease."""
    return f"{worker_name}/{uuid.uuid4().hex[:12]}"


def run_job(
    job_id: uuid.UUID,
    *,
    worker_name: str,
    settings: Settings | None = None,
    process_stopping: Callable[[], bool] | None = None,
) -> Outcome:
    """Claim ``job_id`` and run it to a final state (or hand it back); never raises for a job's own errors.

    ``process_stopping`` lets the embedded runner stop at a batch boundary when
    its process shuts down; the job then goes back to the queue and resumes from
    its last checkpoint.
    """
    settings = settings or get_settings()
    sessions = session_factory(settings.database_url)
    lease_owner = new_lease_owner(worker_name)
    def take() -> jobs_store.Claim | None:
        with sessions() as session:
            return jobs_store.claim_job(session, job_id, lease_owner=lease_owner, worker=worker_name,
                                  lease_seconds=settings.lease_seconds)

    try:  # the message stays with this worker meanwhile; the other queued ones stay in the queue
        claim = until_database_answers(take, what=f"job {job_id}: claim", give_up_after=None,
                                       stopping=process_stopping or (lambda: False))
    except DatabaseUnavailable:
        log.warning("job %s: stopping before the database answered; handing the job id back", job_id)
        return Outcome.RELEASED
    if claim is None:
        log.info("job %s: not claimable (running elsewhere, finished or cancelled); skipping", job_id)
        return Outcome.SKIPPED
    log.info("job %s: attempt %d on %s%s", job_id, claim.attempt, worker_name,
             f", resuming after epoch {claim.checkpoint_epoch}" if claim.checkpoint_path else "")

    heartbeat = Heartbeat(sessions, job_id, lease_owner, lease_seconds=settings.lease_seconds,
                          interval=settings.heartbeat_seconds, process_stopping=process_stopping)
    recorder = EpochRecorder(sessions, job_id, lease_owner, settings.lease_seconds, settings.database_wait_seconds)
    checkpoints = artifacts.checkpoint_dir(settings.artifact_dir, job_id, claim.attempt)
    # The lease is renewed until the job's final state is written, not only while it trains: converting
    # and hashing the weights and the checkpoint of a large model takes a while, and a lease that lapsed
    # meanwhile would let a reaper re-queue (or fail) a job that trained to the end.
    with heartbeat:
        try:
            with sessions() as session:
                spec = localize_job_spec(claim.spec, settings.data_dir, settings.artifact_dir, session)
            result = growth.run(spec, recorder, checkpoint_dir=checkpoints, resume_from=claim.checkpoint_path,
                                should_stop=heartbeat.should_stop)
            heartbeat.finalising()
            return _succeed(sessions, settings, claim, result)
        except Interrupted:
            heartbeat.finalising()
            if heartbeat.lost.is_set():
                return Outcome.LOST
            if heartbeat.cancel_requested.is_set():
                return _end(sessions, settings, claim, JobStatus.CANCELED, None)
            with sessions() as session:
                released = jobs_store.release_job(session, job_id, lease_owner=lease_owner,
                                                  reason="worker shutting down")
            if released:
                return Outcome.RELEASED
            # Not handed back: a cancel arrived since the last heartbeat (or the lease is gone, and
            # _end says LOST).
            return _end(sessions, settings, claim, JobStatus.CANCELED, None)
        except LeaseLost:
            return Outcome.LOST
        except jobs_store.HistoryConflict as exc:
            # An IntegrityError, but not a database outage: another attempt would hit it again.
            log.error("job %s: %s", job_id, exc)
            heartbeat.finalising()
            return _end(sessions, settings, claim, JobStatus.FAILED, str(exc))
        except (DBAPIError, DatabaseUnavailable):
            # Not the job's fault: leave it to the lease, so the reaper gives it another attempt.
            log.exception("job %s: database error; abandoning this attempt", job_id)
            return Outcome.ABANDONED
        except Exception as exc:
            log.exception("job %s failed", job_id)
            heartbeat.finalising()
            return _end(sessions, settings, claim, JobStatus.FAILED, describe_error(exc))


def describe_error(exc: BaseException) -> str:
    """The message stored in ``jobs.error``: spec errors name their field, others their type."""
    if isinstance(exc, SpecError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _succeed(sessions: sessionmaker[Session], settings: Settings, claim: jobs_store.Claim,
             result: dict[str, Any]) -> Outcome:
    final_state = Path(result["weights"])
    staged = artifacts.write_weights(
        final_state, artifacts.staged_weights_path(settings.artifact_dir, claim.job_id, claim.attempt),
        result["final"]["model"], result["final"].get("preprocessing"))
    final_state.unlink(missing_ok=True)  # the safetensors file replaces growth's torch copy
    def finish() -> bool:
        with sessions() as session:
            return jobs_store.finish_job(session, claim.job_id, lease_owner=claim.lease_owner, result=result,
                                   weights=staged, destination=artifacts.weights_path(settings.artifact_dir,
                                                                                      claim.job_id))

    finished = until_database_answers(finish, what=f"job {claim.job_id}: finish",
                                      give_up_after=settings.database_wait_seconds)
    if not finished:
        staged.path.unlink(missing_ok=True)  # the job is another attempt's now: leave nothing of ours behind
        return Outcome.LOST
    _tidy(sessions, settings, claim.job_id)
    return Outcome.SUCCEEDED


def _end(sessions: sessionmaker[Session], settings: Settings, claim: jobs_store.Claim, status: JobStatus,
         error: str | None) -> Outcome:
    def end() -> bool:
        with sessions() as session:
            return jobs_store.end_job(session, claim.job_id, lease_owner=claim.lease_owner, status=status, error=error)

    ended = until_database_answers(end, what=f"job {claim.job_id}: {status.value}",
                                   give_up_after=settings.database_wait_seconds)
    if not ended:
        return Outcome.LOST
    _tidy(sessions, settings, claim.job_id)
    return Outcome(status.value)


def _tidy(sessions: sessionmaker[Session], settings: Settings, job_id: uuid.UUID) -> None:
    """Drop the checkpoint folders of earlier attempts; the one holding the recorded checkpoint stays."""
    try:
        with sessions() as session:
            checkpoint = session.scalar(select(Job.checkpoint_path).where(Job.id == job_id))
    except DBAPIError:  # the job's outcome is written; the folders go at its next tidy-up, or stay
        log.warning("job %s: the database did not answer; earlier attempts' checkpoints are kept", job_id)
        return
    artifacts.remove_other_attempts(settings.artifact_dir, job_id, Path(checkpoint) if checkpoint else None)
