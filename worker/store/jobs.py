"""Write-side data access for jobs: create, cancel, retry, claim, lease, record, finish, reap, re-send.

Every function is one unit of work and commits. Everything a worker writes
while it runs a job is fenced by its lease: the UPDATE that starts each
transaction matches only while ``jobs.lease_owner`` is still this attempt's
token and the job is running, so a worker that lost its job (lease expired and
the job re-queued or claimed by another worker) can no longer write to it.
The read side (lists, pages, history queries) lives in ``app/queries.py``.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from growth.events import ArchitectureChanged, EpochEnd
from growth.spec import JobSpec, parse_spec

from .artifacts import StoredFile, describe, publish
from .models import (
    Artifact,
    ArtifactKind,
    EventKind,
    Job,
    JobEpoch,
    JobDataset,
    JobEvent,
    JobUnit,
    JobStatus,
    UtcDateTime,
)
from .session import database_now

# --------------------------------------------------------------------------- creating and cancelling


def create_job(
    session: Session,
    *,
    owner: str,
    spec: Mapping[str, Any] | JobSpec,
    max_attempts: int,
    idempotency_key: str | None = None,
    queue: str | None = None,
    stored_spec: Mapping[str, Any] | None = None,
    dataset_id: uuid.UUID | None = None,
) -> tuple[Job, bool]:
    """Store a queued job; returns ``(job, created)``. Commits; the caller then calls ``dispatch.enqueue``.

    ``spec`` is validated and normalised (``growth.errors.SpecError`` on bad input).
    With an ``idempotency_key`` already used by ``owner`` the existing job comes
    back with ``created=False`` (also when two requests race: the unique
    constraint decides).
    """
    job_spec = spec if isinstance(spec, JobSpec) else parse_spec(spec)
    if idempotency_key is not None:
        existing = _job_by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return existing, False
    # The service stores uploaded datasets and source jobs by id (app/references.py), not by path.
    normalised = dict(stored_spec) if stored_spec is not None else job_spec.to_dict()
    now = database_now(session)
    job = Job(owner=owner, method=job_spec.method, spec=normalised, status=JobStatus.QUEUED, attempts=0,
              max_attempts=max_attempts, idempotency_key=idempotency_key, progress_epoch=0,
              progress_total=job_spec.total_epochs, current_model=normalised["model"], created_at=now,
              enqueued_at=now, queue=queue)
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        existing = _job_by_idempotency_key(session, owner, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    if dataset_id is not None:
        # Its foreign key locks the dataset row against a concurrent DELETE until this commits.
        session.add(JobDataset(job_id=job.id, dataset_id=dataset_id))
    _add_event(session, job.id, EventKind.STATE, {"status": JobStatus.QUEUED})
    session.commit()
    return job, True


def _job_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def request_cancel(session: Session, job_id: uuid.UUID) -> Job | None:
    """Cancel a job: a queued one at once, a running one cooperatively (its worker stops at a batch boundary).

    Returns the job as it is now (None if there is no such job); finished jobs are left as they are. Commits.
    One UPDATE decides between the two on the row as it is when the UPDATE runs: with a separate
    UPDATE per status, a job released to the queue (or claimed) between them matched neither, and the
    request answered 200 while the job ran on later.
    """
    now = database_now(session)
    was_queued = Job.status == JobStatus.QUEUED
    status = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .values(cancel_requested=True,
                status=case((was_queued, JobStatus.CANCELED.value), else_=Job.status),
                finished_at=case((was_queued, literal(now, UtcDateTime())), else_=Job.finished_at))
        .returning(Job.status).execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if status == JobStatus.CANCELED:  # RETURNING reads the new row: only a queued job becomes canceled
        _add_event(session, job_id, EventKind.STATE, {"status": JobStatus.CANCELED, "reason": "canceled while queued"})
    session.commit()
    return session.get(Job, job_id, populate_existing=True)


def retry_job(session: Session, job_id: uuid.UUID, *, extra_attempts: int) -> Job | None:
    """Queue a failed or canceled job again with ``extra_attempts`` more attempts. Commits; then ``enqueue`` it.

    Its history and checkpoint stay, so it resumes after its last recorded epoch
    (or starts over if it never recorded one). Returns the job, or None if it
    is not failed or canceled (any more).
    """
    if extra_attempts < 1:
        raise ValueError("extra_attempts must be at least 1")
    retried = _update_job(
        session, and_(Job.id == job_id, Job.status.in_((JobStatus.FAILED, JobStatus.CANCELED))),
        status=JobStatus.QUEUED, cancel_requested=False, error=None, finished_at=None, lease_owner=None,
        lease_expires_at=None, max_attempts=Job.attempts + extra_attempts, enqueued_at=database_now(session))
    if not retried:
        session.rollback()
        return None
    _add_event(session, job_id, EventKind.STATE, {"status": JobStatus.QUEUED, "reason": "retried"})
    session.commit()
    return session.get(Job, job_id, populate_existing=True)


# --------------------------------------------------------------------------- claiming and the lease


@dataclass(frozen=True)
class Claim:
    """What a worker needs to run the job it just claimed."""

    job_id: uuid.UUID
    lease_owner: str
    attempt: int
    spec: dict[str, Any]
    checkpoint_path: str | None
    checkpoint_epoch: int | None


def claim_job(
    session: Session, job_id: uuid.UUID, *, lease_owner: str, worker: str, lease_seconds: float,
) -> Claim | None:
    """Take the job if nobody runs it: one conditional UPDATE, so two deliveries of one message never both win.

    Claimable: queued, or running with an expired lease (its worker died and the
    reaper has not re-queued it yet); never cancelled, finished, or out of
    attempts. ``lease_owner`` must be unique per attempt (see ``worker.runners.attempt``).
    A job whose history runs past its checkpoint is rewound to it in the same
    transaction (``_rewind_history``), so the resumed run records those epochs again.
    """
    now = database_now(session)
    claimable = and_(
        Job.id == job_id,
        Job.attempts < Job.max_attempts,
        Job.cancel_requested.is_(False),
        or_(Job.status == JobStatus.QUEUED, and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)),
    )
    row = session.execute(
        update(Job).where(claimable)
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, lease_owner=lease_owner, worker=worker,
                lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now))
        .returning(Job.attempts, Job.spec, Job.checkpoint_path, Job.checkpoint_epoch, Job.progress_epoch)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        session.rollback()
        return None
    attempts, spec, checkpoint_path, checkpoint_epoch, progress_epoch = row
    # growth starts at the epoch after the checkpoint, or at 0 without one.
    first_epoch = checkpoint_epoch + 1 if checkpoint_path is not None and checkpoint_epoch is not None else 0
    running: dict[str, Any] = {"status": JobStatus.RUNNING, "attempt": attempts, "worker": worker,
                               "resumed_after_epoch": checkpoint_epoch if checkpoint_path else None}
    if progress_epoch > first_epoch:
        _rewind_history(session, job_id, first_epoch=first_epoch, initial_model=spec["model"])
        running["discarded_epochs"] = progress_epoch - first_epoch  # streamed before, recorded again now
    _add_event(session, job_id, EventKind.STATE, running)
    session.commit()
    return Claim(job_id, lease_owner, attempts, spec, checkpoint_path, checkpoint_epoch)


def _rewind_history(session: Session, job_id: uuid.UUID, *, first_epoch: int, initial_model: dict[str, Any]) -> None:
    """Forget what was recorded from ``first_epoch`` on, and move the progress back to the epoch before it.

    With ``train.checkpoint_every`` > 1 some epochs are recorded without a
    checkpoint; a run that stops after one resumes from an older checkpoint and
    runs those epochs again. Their rows, unit rows and epoch/architecture
    events go (the architecture changes of an epoch are recorded with it), so
    the history after the resume has every epoch exactly once. Runs inside the
    claim's transaction: the attempt that recorded them has lost the job, and
    its writes are fenced by the lease.
    """
    session.execute(delete(JobUnit).where(JobUnit.job_id == job_id, JobUnit.epoch >= first_epoch))
    session.execute(delete(JobEpoch).where(JobEpoch.job_id == job_id, JobEpoch.epoch >= first_epoch))
    per_epoch = JobEvent.kind.in_((EventKind.EPOCH, EventKind.ARCHITECTURE))
    if first_epoch > 0:
        # From scratch, even the changes made before epoch 0 (recorded with it, as epoch -1) come again.
        per_epoch = and_(per_epoch, JobEvent.payload["epoch"].as_integer() >= first_epoch)
    session.execute(delete(JobEvent).where(JobEvent.job_id == job_id, per_epoch))
    # What record_epoch had set after the epoch before first_epoch: its widths and the last model change.
    widths = {unit: width for unit, width in session.execute(
        select(JobUnit.unit, JobUnit.width).where(JobUnit.job_id == job_id, JobUnit.epoch == first_epoch - 1)
        .order_by(JobUnit.id))}
    change = session.scalar(select(JobEvent.payload).where(JobEvent.job_id == job_id,
                                                            JobEvent.kind == EventKind.ARCHITECTURE)
                            .order_by(JobEvent.id.desc()).limit(1))
    _update_job(session, Job.id == job_id, progress_epoch=first_epoch,
                current_widths=widths if first_epoch > 0 else None,
                current_model=change["spec"] if change is not None else initial_model)


def _leased(job_id: uuid.UUID, lease_owner: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.lease_owner == lease_owner, Job.status == JobStatus.RUNNING)


def renew_lease(session: Session, job_id: uuid.UUID, *, lease_owner: str, lease_seconds: float) -> bool | None:
    """Extend the lease; returns ``cancel_requested``, or None when this attempt no longer holds the job."""
    now = database_now(session)
    cancel_requested = session.execute(
        update(Job).where(_leased(job_id, lease_owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        .returning(Job.cancel_requested).execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    session.commit()
    return cancel_requested


# --------------------------------------------------------------------------- recording a run


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class HistoryConflict(Exception):
    """An epoch the run reported is already recorded: the job's history and its checkpoint disagree.

    ``claim_job`` rewinds the history to the checkpoint, so this means a bug or
    a hand-edited database; retrying would hit it again, so the job fails.
    """


def record_epoch(
    session: Session,
    job_id: uuid.UUID,
    *,
    lease_owner: str,
    lease_seconds: float,
    epoch: EpochEnd,
    changes: Sequence[ArchitectureChanged] = (),
) -> bool:
    """Record one epoch, and the architecture changes made at its end, in ONE transaction.

    The epoch row, its unit rows, the event rows, the progress and the
    checkpoint pointer (when the epoch wrote one) commit together. Epochs
    recorded after the last checkpoint are forgotten when the job is claimed
    again (``claim_job``), so a resumed run neither skips nor repeats one.
    Returns False (and writes nothing) if the lease is lost; raises
    ``HistoryConflict`` (and writes nothing) if the epoch is already recorded.
    """
    now = database_now(session)
    values: dict[str, Any] = {
        "progress_epoch": epoch.epoch + 1,
        "current_widths": {unit.name: unit.width for unit in epoch.units},
        "heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if changes:
        values["current_model"] = changes[-1].spec
    if epoch.checkpoint is not None:
        values["checkpoint_path"] = epoch.checkpoint
        values["checkpoint_epoch"] = epoch.epoch
    if not _update_job(session, _leased(job_id, lease_owner), **values):
        session.rollback()
        return False
    try:
        session.execute(insert(JobEpoch).values(
            job_id=job_id, epoch=epoch.epoch, phase=epoch.phase, train_loss=_finite(epoch.train_loss),
            val_accuracy=epoch.val_accuracy, lr=epoch.lr, params=epoch.params, macs=epoch.macs,
            seconds=epoch.seconds, sparsity=_finite(epoch.sparsity),
            support_val_accuracy=_finite(epoch.support_val_accuracy)))
        if epoch.units:
            session.execute(insert(JobUnit), [
                {"job_id": job_id, "epoch": epoch.epoch, "unit": unit.name, "width": unit.width,
                 "selected": unit.selected, "ratio": unit.ratio, "grew": unit.grew} for unit in epoch.units])
    except IntegrityError as exc:  # UNIQUE(job_id, epoch) or UNIQUE(job_id, unit, epoch)
        session.rollback()
        raise HistoryConflict(
            f"epoch {epoch.epoch} is already recorded in the job's history, which does not match the checkpoint "
            f"the run resumed from; the job was stopped instead of recording the epoch twice") from exc
    for change in changes:
        _add_event(session, job_id, EventKind.ARCHITECTURE, change.to_dict())
    payload = epoch.to_dict()
    payload.pop("checkpoint")  # a path inside the artifact store, not for clients
    _add_event(session, job_id, EventKind.EPOCH, payload)
    session.commit()
    return True


def finish_job(
    session: Session, job_id: uuid.UUID, *, lease_owner: str, result: Mapping[str, Any], weights: StoredFile,
    destination: Path,
) -> bool:
    """Mark the job succeeded with its result (stored without the history, which is in job_epochs). Commits.

    ``weights`` is this attempt's own file (``artifacts.staged_weights_path``);
    it moves to ``destination``, the job's weights path, only once the
    lease-checked UPDATE matched: an attempt that lost its lease returns False
    here and never touches the file the attempt that finished recorded.
    """
    final = result.get("final", {})
    stored = {key: value for key, value in result.items() if key != "history"}
    stored["weights"] = str(destination)
    checkpoint = _last_checkpoint(session, job_id)
    if not _update_job(session, _leased(job_id, lease_owner), status=JobStatus.SUCCEEDED, result=stored,
                       params=final.get("params"), macs=final.get("macs"),
                       test_accuracy=_finite(final.get("test_accuracy")), wall_seconds=result.get("wall_seconds"),
                       progress_total=result.get("epochs", Job.progress_total), current_model=final.get("model"),
                       current_widths=final.get("widths"), finished_at=database_now(session), lease_expires_at=None,
                       error=None):
        session.rollback()
        return False
    # The UPDATE holds the job's row (PostgreSQL) or the database's write lock (SQLite) until the commit,
    # so no other attempt can be finishing meanwhile. Should the commit fail after the rename, the job is
    # still not succeeded and nothing serves the file; the attempt that does finish replaces it.
    published = publish(weights, destination)
    _store_artifact(session, job_id, ArtifactKind.WEIGHTS, published, epoch=result.get("epochs", 0) - 1)
    if checkpoint is not None:
        _store_artifact(session, job_id, ArtifactKind.CHECKPOINT, *checkpoint)
    _add_event(session, job_id, EventKind.STATE, {
        "status": JobStatus.SUCCEEDED, "test_accuracy": final.get("test_accuracy"), "params": final.get("params"),
        "macs": final.get("macs"), "epochs": result.get("epochs")})
    session.commit()
    return True


def end_job(
    session: Session, job_id: uuid.UUID, *, lease_owner: str, status: JobStatus, error: str | None = None,
) -> bool:
    """Mark a running job canceled or failed (``error`` says why); its history stays. Commits."""
    if status not in (JobStatus.CANCELED, JobStatus.FAILED):
        raise ValueError(f"end_job ends a job as canceled or failed, not {status}")
    checkpoint = _last_checkpoint(session, job_id)
    if not _update_job(session, _leased(job_id, lease_owner), status=status, error=error,
                       finished_at=database_now(session), lease_expires_at=None):
        session.rollback()
        return False
    if checkpoint is not None:
        _store_artifact(session, job_id, ArtifactKind.CHECKPOINT, *checkpoint)
    _add_event(session, job_id, EventKind.STATE, {"status": status, "error": error})
    session.commit()
    return True


def release_job(session: Session, job_id: uuid.UUID, *, lease_owner: str, reason: str) -> bool:
    """Hand a running job back to the queue (its process is shutting down); the attempt is not counted.

    False, and nothing changes, when the lease is lost or a cancel was requested: a queued job with a
    cancel request is never claimed again and would stay queued for good, so the caller cancels it
    instead (``end_job``, still fenced by the lease).
    """
    if not _update_job(session, and_(_leased(job_id, lease_owner), Job.cancel_requested.is_(False)),
                       status=JobStatus.QUEUED,
                       attempts=Job.attempts - 1, lease_owner=None, lease_expires_at=None,
                       enqueued_at=database_now(session)):
        session.rollback()
        return False
    _add_event(session, job_id, EventKind.STATE, {"status": JobStatus.QUEUED, "reason": reason})
    session.commit()
    return True


def _last_checkpoint(session: Session, job_id: uuid.UUID) -> tuple[StoredFile, int | None] | None:
    """The job's recorded checkpoint file, hashed before the job's final UPDATE, so no lock is held meanwhile.

    Only the lease holder moves ``checkpoint_path``, so reading it ahead of that UPDATE is safe.
    """
    row = session.execute(select(Job.checkpoint_path, Job.checkpoint_epoch).where(Job.id == job_id)).one_or_none()
    session.rollback()
    return _checkpoint_file(*row) if row is not None else None


def _checkpoint_file(path: str | None, epoch: int | None) -> tuple[StoredFile, int | None] | None:
    if path is None or not Path(path).is_file():
        return None
    return describe(Path(path)), epoch


def _store_artifact(session: Session, job_id: uuid.UUID, kind: ArtifactKind, stored: StoredFile,
                    epoch: int | None) -> None:
    session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind))
    session.execute(insert(Artifact).values(job_id=job_id, kind=kind, path=str(stored.path), size=stored.size,
                                            sha256=stored.sha256, epoch=epoch, created_at=database_now(session)))


def _update_job(session: Session, condition: ColumnElement[bool], **values: Any) -> bool:
    """One conditional UPDATE of a job row; True if the condition held (and the row changed)."""
    matched = session.execute(update(Job).where(condition).values(**values).returning(Job.id)
                              .execution_options(synchronize_session=False)).first()
    return matched is not None


def _add_event(session: Session, job_id: uuid.UUID, kind: EventKind, payload: dict[str, Any]) -> None:
    session.execute(insert(JobEvent).values(job_id=job_id, kind=kind, payload=payload,
                                            created_at=database_now(session)))


# --------------------------------------------------------------------------- the reaper's side


@dataclass
class Reaped:
    """Jobs whose lease had expired, by what happened to them."""

    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    canceled: list[uuid.UUID] = field(default_factory=list)


def reap_expired_leases(session: Session, now: datetime | None = None) -> Reaped:
    """Re-queue running jobs whose worker stopped heart-beating; fail those out of attempts. Commits.

    Each job moves with its own conditional UPDATE, so reapers in several
    workers can run at once: exactly one of them re-queues a given job (and
    re-sends its message; see ``worker.runners.reaper``).
    """
    now = now or database_now(session)
    expired = session.execute(
        select(Job.id, Job.attempts, Job.max_attempts, Job.cancel_requested, Job.worker, Job.checkpoint_path,
               Job.checkpoint_epoch)
        .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
        .order_by(Job.created_at)
    ).all()
    session.rollback()  # read outside any write transaction; each move below re-checks its own condition
    reaped = Reaped()
    for job_id, attempts, max_attempts, cancel_requested, worker, checkpoint_path, checkpoint_epoch in expired:
        # cancel_requested is part of the condition: a cancel landing after the SELECT must not re-queue
        # the job, since a queued job with a cancel request is never claimed again (it would wait forever).
        still_expired = and_(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_expires_at < now,
                             Job.attempts == attempts, Job.cancel_requested.is_(cancel_requested))
        lost = f"worker {worker} stopped renewing its lease" if worker else "the worker stopped renewing its lease"
        if cancel_requested:
            status, bucket, error = JobStatus.CANCELED, reaped.canceled, None
            values: dict[str, Any] = {"status": status, "finished_at": now}
        elif attempts >= max_attempts:
            error = f"worker lost {attempts} time{'s' if attempts != 1 else ''} ({lost}); no attempts left"
            status, bucket = JobStatus.FAILED, reaped.failed
            values = {"status": status, "finished_at": now, "error": error}
        else:
            status, bucket, error = JobStatus.QUEUED, reaped.requeued, None
            values = {"status": status, "enqueued_at": now}
        checkpoint = _checkpoint_file(checkpoint_path, checkpoint_epoch) if status != JobStatus.QUEUED else None
        if not _update_job(session, still_expired, lease_owner=None, lease_expires_at=None, **values):
            session.rollback()
            continue
        if checkpoint is not None:
            _store_artifact(session, job_id, ArtifactKind.CHECKPOINT, *checkpoint)
        payload: dict[str, Any] = {"status": status, "reason": lost, "attempts": attempts}
        if error:
            payload["error"] = error
        _add_event(session, job_id, EventKind.STATE, payload)
        session.commit()
        bucket.append(job_id)
    return reaped


def _waiting_to_run() -> ColumnElement[bool]:
    """Queued and claimable (``claim_job`` would take it)."""
    return and_(Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False), Job.attempts < Job.max_attempts)


def next_queued_job(session: Session) -> uuid.UUID | None:
    """The oldest job waiting to run (the embedded runner's queue is the jobs table itself)."""
    job_id = session.scalar(select(Job.id).where(_waiting_to_run()).order_by(Job.created_at).limit(1))
    session.rollback()
    return job_id


# --------------------------------------------------------------------------- re-sending lost messages
#
# The broker is not the source of truth: a send can fail after the job is stored, and a Redis
# restart drops every waiting job id. ``jobs.enqueued_at`` says when a job's id was last sent
# (NULL: the last send failed), and the reaper sends a waiting job again once that is older
# than ``requeue_after_seconds``. A duplicate is harmless: the claim lets one delivery run it.


def _not_sent_since(sent_before: datetime) -> ColumnElement[bool]:
    return or_(Job.enqueued_at.is_(None), Job.enqueued_at < sent_before)


def queued_jobs_to_resend(session: Session, *, sent_before: datetime) -> list[uuid.UUID]:
    """Jobs waiting to run whose id was not sent since ``sent_before`` (or whose last send failed), oldest first."""
    job_ids = list(session.scalars(
        select(Job.id).where(_waiting_to_run(), _not_sent_since(sent_before)).order_by(Job.created_at)))
    session.rollback()
    return job_ids


def claim_resend(session: Session, job_id: uuid.UUID, *, sent_before: datetime, now: datetime | None = None) -> bool:
    """Take the right to send this job's id again: True for exactly one of several reapers per period. Commits.

    The conditional UPDATE moves ``enqueued_at`` to ``now`` only while the job
    still waits and was not sent since ``sent_before``, so a second reaper
    scanning at the same time finds the condition false and sends nothing.
    """
    claimed = _update_job(session, and_(Job.id == job_id, _waiting_to_run(), _not_sent_since(sent_before)),
                          enqueued_at=now or database_now(session))
    session.commit()
    return claimed


def job_queue(session: Session, job_id: uuid.UUID) -> str | None:
    """The queue the job was sent to (None: unknown, a job stored before revision 0004)."""
    queue = session.scalar(select(Job.queue).where(Job.id == job_id))
    session.rollback()
    return queue


def mark_unsent(session: Session, job_id: uuid.UUID) -> bool:
    """Record that sending a queued job's id failed, so the next reaper scan sends it. Commits."""
    marked = _update_job(session, and_(Job.id == job_id, Job.status == JobStatus.QUEUED), enqueued_at=None)
    session.commit()
    return marked
