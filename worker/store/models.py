"""The database schema: API keys, jobs and everything a job records while it runs.

Tables are created only by the Alembic revisions in ``migrations/``; a test
checks that these models and the migrated schema agree. All timestamps are
timezone-aware UTC (``UtcDateTime``), also on SQLite, which stores none.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so that revisions can drop what they created on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY, so BIGINT keys are INTEGER there (64-bit anyway).
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that comes back aware (UTC) from every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use an aware UTC datetime (worker.store.models.utcnow())")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class ArtifactKind(StrEnum):
    CHECKPOINT = "checkpoint"
    WEIGHTS = "weights"


class EventKind(StrEnum):
    STATE = "state"  # a status change; payload {"status": ..., ...}
    EPOCH = "epoch"  # growth.events.EpochEnd.to_dict() without the checkpoint path
    ARCHITECTURE = "architecture"  # growth.events.ArchitectureChanged.to_dict()


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class ApiKey(Base):
    """An API key; only the SHA-256 of the secret is stored (see worker.store.keys)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the secret's first characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        UniqueConstraint("owner", "idempotency_key"),
        Index(None, "owner", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]]  # normalised (growth.spec.parse_spec(...).to_dict())
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    # The lease: who runs the job and until when, unless it heart-beats again.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(200))  # the Celery hostname of the last attempt
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Progress, updated in the same transaction as each recorded epoch.
    progress_epoch: Mapped[int] = mapped_column(default=0)  # epochs recorded so far
    progress_total: Mapped[int] = mapped_column(default=0)  # planned epochs (an upper bound for growth)
    current_model: Mapped[dict[str, Any] | None]
    current_widths: Mapped[dict[str, Any] | None]
    checkpoint_path: Mapped[str | None] = mapped_column(Text)  # the checkpoint after `checkpoint_epoch`
    checkpoint_epoch: Mapped[int | None]
    # Outcome.
    params: Mapped[int | None] = mapped_column(BigInteger)
    macs: Mapped[int | None] = mapped_column(BigInteger)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None]  # the result JSON without its history
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the job last became queued or its id was last sent to the broker; NULL when the last send failed
    # (or the row predates revision 0002). A queued job not sent for a while may have lost its message:
    # the reaper sends it again (worker.runners.reaper).
    enqueued_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # The broker queue the job was sent to (the submitting API's NETGROW_QUEUE): re-sends go there too,
    # so a job never moves to a worker pool it was not sent to. NULL before revision 0004.
    queue: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    epochs: Mapped[list[JobEpoch]] = relationship(
        back_populates="job", order_by="JobEpoch.epoch", cascade="all, delete-orphan", passive_deletes=True)
    units: Mapped[list[JobUnit]] = relationship(
        back_populates="job", order_by="(JobUnit.epoch, JobUnit.unit)", cascade="all, delete-orphan",
        passive_deletes=True)
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True)
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan", passive_deletes=True)


def _job_fk() -> Any:
    return ForeignKey("jobs.id", ondelete="CASCADE")


class JobEpoch(Base):
    """One row per epoch of a job's run, written once (UNIQUE(job_id, epoch) guards re-runs)."""

    __tablename__ = "job_epochs"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(_job_fk())
    epoch: Mapped[int]
    phase: Mapped[str] = mapped_column(String(16))
    train_loss: Mapped[float | None] = mapped_column(Float)  # None when training diverged (NaN / inf)
    val_accuracy: Mapped[float] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    params: Mapped[int] = mapped_column(BigInteger)
    macs: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    sparsity: Mapped[float | None] = mapped_column(Float)
    # the network restricted to Γ's support (growth/methods/support.py); None without Γ
    support_val_accuracy: Mapped[float | None] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="epochs")


class JobUnit(Base):
    """A unit's width and selected filters at an epoch's end: the filter-configuration history."""

    __tablename__ = "job_units"
    __table_args__ = (UniqueConstraint("job_id", "unit", "epoch"), Index(None, "job_id", "epoch"))

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(_job_fk())
    epoch: Mapped[int]
    unit: Mapped[str] = mapped_column(String(64))
    width: Mapped[int]
    selected: Mapped[int]
    ratio: Mapped[float] = mapped_column(Float)
    grew: Mapped[int] = mapped_column(default=0)

    job: Mapped[Job] = relationship(back_populates="units")


class Artifact(Base):
    """A file a job left in the artifact store: its final weights and its last checkpoint."""

    __tablename__ = "artifacts"
    __table_args__ = (CheckConstraint(_in("kind", ArtifactKind), name="kind"), UniqueConstraint("job_id", "kind"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(_job_fk())
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)  # absolute; the artifact store is mounted at one path everywhere
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int | None]  # the last epoch the file includes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")


class JobEvent(Base):
    """What happened to a job, in order: the SSE endpoint streams these rows by id."""

    __tablename__ = "job_events"
    __table_args__ = (CheckConstraint(_in("kind", EventKind), name="kind"), Index(None, "job_id", "id"))

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(_job_fk())
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="events")


DATASET_FORMATS = ("npz", "image_folder")


class Dataset(Base):
    """An uploaded dataset, checked and stored under ``data_dir/<path>`` (worker.uploads); one per owner and hash."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("owner", "sha256"),
        CheckConstraint(f"format IN ({', '.join(repr(f) for f in DATASET_FORMATS)})", name="format"),
        Index(None, "owner", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))  # of the uploaded bytes
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)  # relative to the data directory: the npz file or the image folder
    summary: Mapped[dict[str, Any]]  # growth.data.summary.DatasetSummary.to_dict()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobDataset(Base):
    """The uploaded dataset a job trains on (a DELETE of the dataset is refused while the job is unfinished)."""

    __tablename__ = "job_datasets"
    __table_args__ = (Index(None, "dataset_id"),)

    job_id: Mapped[uuid.UUID] = mapped_column(_job_fk(), primary_key=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
