"""Read-side data access for the API: jobs of one owner, pages, history, events, counts.

Writes (creating, cancelling, re-queueing jobs) go through ``worker.store.jobs`` so
that the API and the workers share one implementation of every state change.
Every query here is bounded and uses an index: a job's history is two queries
(epochs, then units) whatever the number of epochs or units.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from worker.store.models import (
    TERMINAL_STATUSES,
    Artifact,
    ArtifactKind,
    EventKind,
    Job,
    JobEpoch,
    JobEvent,
    JobStatus,
    JobUnit,
)
from worker.store.session import database_now

EVENT_BATCH = 200


def get_job(session: Session, job_id: uuid.UUID, owner: str) -> Job | None:
    """The job if it exists and belongs to ``owner`` (others' jobs are indistinguishable from missing ones)."""
    return session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))


def get_jobs(session: Session, job_ids: Sequence[uuid.UUID], owner: str) -> dict[uuid.UUID, Job]:
    jobs = session.scalars(select(Job).where(Job.id.in_(job_ids), Job.owner == owner))
    return {job.id: job for job in jobs}


@dataclass(frozen=True)
class JobFilter:
    owner: str
    status: str | None = None
    method: str | None = None


def list_jobs(session: Session, where: JobFilter, *, limit: int, offset: int) -> tuple[list[Job], int]:
    """One page of the owner's jobs, newest first, and the number of jobs matching the filter."""
    conditions = [Job.owner == where.owner]
    if where.status is not None:
        conditions.append(Job.status == where.status)
    if where.method is not None:
        conditions.append(Job.method == where.method)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    page = session.scalars(
        select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset))
    return list(page), total


def history(
    session: Session,
    job_id: uuid.UUID,
    *,
    units: Sequence[str] = (),
    from_epoch: int | None = None,
    to_epoch: int | None = None,
) -> list[dict[str, Any]]:
    """Epoch rows with their per-unit widths, shaped like the result JSON's ``history`` entries.

    Two range scans, on UNIQUE(job_id, epoch) and on (job_id, epoch) of job_units;
    units come in recording order, which is model order (conv1, conv2, …, conv10).
    Table columns (not ORM attributes) keep row handling to plain tuples: a long
    run has thousands of unit rows.
    """
    epoch = JobEpoch.__table__.c
    unit_row = JobUnit.__table__.c
    epoch_range = [epoch.job_id == job_id]
    unit_range = [unit_row.job_id == job_id]
    if from_epoch is not None:
        epoch_range.append(epoch.epoch >= from_epoch)
        unit_range.append(unit_row.epoch >= from_epoch)
    if to_epoch is not None:
        epoch_range.append(epoch.epoch <= to_epoch)
        unit_range.append(unit_row.epoch <= to_epoch)
    if units:
        unit_range.append(unit_row.unit.in_(units))
    rows: dict[int, dict[str, Any]] = {}
    for (number, phase, train_loss, val_accuracy, lr, params, macs, seconds, sparsity,
         support_val_accuracy) in session.execute(
            select(epoch.epoch, epoch.phase, epoch.train_loss, epoch.val_accuracy, epoch.lr, epoch.params,
                   epoch.macs, epoch.seconds, epoch.sparsity, epoch.support_val_accuracy)
            .where(*epoch_range).order_by(epoch.epoch)):
        rows[number] = {"epoch": number, "phase": phase, "train_loss": train_loss, "val_accuracy": val_accuracy,
                        "lr": lr, "params": params, "macs": macs, "seconds": seconds, "sparsity": sparsity,
                        "support_val_accuracy": support_val_accuracy, "units": []}
    for number, unit, width, selected, ratio, grew in session.execute(
            select(unit_row.epoch, unit_row.unit, unit_row.width, unit_row.selected, unit_row.ratio, unit_row.grew)
            .where(*unit_range).order_by(unit_row.epoch, unit_row.id)):
        row = rows.get(number)
        if row is not None:
            row["units"].append({"name": unit, "width": width, "selected": selected, "ratio": ratio, "grew": grew})
    return list(rows.values())


def job_result(session: Session, job: Job) -> dict[str, Any]:
    """A succeeded job's result JSON as ``growth.run`` returned it on the worker, ``history`` in its place again.

    The worker stores the result without its history (``worker.store.jobs.finish_job``);
    the rows come back from ``history``, in the result's own shape. ``spec``, and
    ``init`` where the job has one, are the job's stored spec: it names uploaded
    datasets and source jobs by id, where the worker's copy names the files it
    read on its own disk.
    """
    stored = dict(job.result or {})
    stored["spec"] = job.spec
    if "init" in stored:
        stored["init"] = job.spec.get("init")
    rows = history(session, job.id)
    document: dict[str, Any] = {}
    for key, value in stored.items():  # the library's key order: history right after final
        document[key] = value
        if key == "final":
            document["history"] = rows
    document.setdefault("history", rows)
    return document


@dataclass(frozen=True)
class StoredEvent:
    """One ``job_events`` row, as the event stream (``app.sse``) sends it."""

    id: int
    kind: str
    payload: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.kind == EventKind.STATE and self.payload.get("status") in TERMINAL_STATUSES


def events_after(session: Session, job_id: uuid.UUID, after_id: int, limit: int = EVENT_BATCH) -> list[StoredEvent]:
    """The job's events with id > ``after_id``, oldest first (index (job_id, id))."""
    rows = session.execute(
        select(JobEvent.id, JobEvent.kind, JobEvent.payload)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id).limit(limit))
    return [StoredEvent(id=row.id, kind=str(row.kind), payload=row.payload) for row in rows]


def architecture_changes(session: Session, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's architecture events (``{"epoch", "change", "units", "spec"}``), oldest first (index (job_id, id))."""
    return list(session.scalars(
        select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.kind == EventKind.ARCHITECTURE)
        .order_by(JobEvent.id)))


def job_status(session: Session, job_id: uuid.UUID) -> str | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


def weights_artifact(session: Session, job_id: uuid.UUID) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == ArtifactKind.WEIGHTS))


# --- metrics ----------------------------------------------------------------------------


def count_jobs_by_status(session: Session) -> dict[str, int]:
    return {str(status): count for status, count in session.execute(
        select(Job.status, func.count()).group_by(Job.status))}


def count_epoch_events_since(session: Session, seconds: float) -> int:
    """Epochs recorded in the last ``seconds`` by any worker.

    Only jobs that ran in that window can have such events, so the scan goes
    through the status index and each of those jobs' (job_id, id) index range
    instead of the whole events table.
    """
    since = database_now(session) - timedelta(seconds=seconds)  # the clock the workers stamp events with
    active = select(Job.id).where(or_(Job.status == JobStatus.RUNNING, Job.finished_at >= since))
    return session.scalar(
        select(func.count()).select_from(JobEvent)
        .where(JobEvent.job_id.in_(active), JobEvent.kind == EventKind.EPOCH, JobEvent.created_at >= since)) or 0


def count_epochs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(JobEpoch)) or 0


@dataclass(frozen=True)
class OwnerUsage:
    """What one owner has in the system now: the inputs of the per-owner limits (``app.limits``)."""

    active_jobs: int  # queued or running
    submissions_in_window: int  # jobs created in the last ``window_seconds``
    oldest_in_window_age: float | None  # seconds since the oldest of those was created
    artifact_bytes: int  # checkpoints and weights recorded for the owner's jobs


def owner_usage(session: Session, owner: str, *, window_seconds: float) -> OwnerUsage:
    now = database_now(session)
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.owner == owner, Job.status.in_(("queued", "running")))) or 0
    since = now - timedelta(seconds=window_seconds)
    recent, oldest = session.execute(select(func.count(), func.min(Job.created_at)).where(
        Job.owner == owner, Job.created_at >= since)).one()
    stored = session.scalar(select(func.coalesce(func.sum(Artifact.size), 0)).join(Job, Job.id == Artifact.job_id)
                            .where(Job.owner == owner)) or 0
    return OwnerUsage(active_jobs=int(active), submissions_in_window=int(recent),
                      oldest_in_window_age=(now - oldest).total_seconds() if oldest is not None else None,
                      artifact_bytes=int(stored))


def job_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))
