"""Uploaded datasets in the database: one row per (owner, sha256), the files under ``data_dir/uploads``.

Every function is one unit of work and commits. A dataset belongs to its
owner exactly as a job does: every query here is by owner, so another key
sees nothing (the API answers 404). A job that uses a dataset is linked to it
(``job_datasets``); deleting one while a queued or running job uses it is
refused, and a finished job keeps its spec (its link goes with the dataset).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import TERMINAL_STATUSES, Dataset, Job, JobDataset
from .uploads import CheckedUpload, discard, publish, relative_dataset_path, remove_stored, stored_folder


class DatasetInUse(Exception):
    """A dataset that a queued or running job uses cannot be deleted."""

    def __init__(self, job_ids: list[uuid.UUID]) -> None:
        self.job_ids = job_ids
        super().__init__(f"used by {len(job_ids)} unfinished job(s)")


@dataclass(frozen=True)
class Stored:
    dataset: Dataset
    created: bool


def store_dataset(session: Session, *, owner: str, checked: CheckedUpload, sha256: str, size: int,
                  filename: str, data_dir: Path) -> Stored:
    """Record a checked upload and move its files to their stored place; the same bytes again give the same row.

    The files are moved before the row commits and removed again if the
    commit fails, so a row always has its files and no files outlive a
    failed request.
    """
    existing = get_dataset(session, owner, sha256=sha256)
    if existing is not None:
        discard(checked)
        return Stored(existing, created=False)
    destination = stored_folder(data_dir, owner, sha256)
    placed = publish(checked, destination)
    dataset = Dataset(owner=owner, sha256=sha256, format=checked.format, filename=filename[:255], size_bytes=size,
                      summary=checked.summary.to_dict(),
                      path=relative_dataset_path(owner, sha256, checked.format))
    session.add(dataset)
    try:
        session.commit()
    except IntegrityError:
        # The same bytes, uploaded by the same owner at the same moment: the other request's row wins.
        session.rollback()
        winner = get_dataset(session, owner, sha256=sha256)
        if winner is None:  # pragma: no cover - the unique constraint named exactly this row
            raise
        return Stored(winner, created=False)
    except BaseException:
        session.rollback()
        if placed:
            remove_stored(data_dir, owner, sha256)
        raise
    return Stored(dataset, created=True)


def get_dataset(session: Session, owner: str, dataset_id: uuid.UUID | None = None, *,
                sha256: str | None = None) -> Dataset | None:
    query = select(Dataset).where(Dataset.owner == owner)
    if dataset_id is not None:
        query = query.where(Dataset.id == dataset_id)
    if sha256 is not None:
        query = query.where(Dataset.sha256 == sha256)
    return session.scalars(query).first()


def list_datasets(session: Session, owner: str, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
    total = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.owner == owner)) or 0
    rows = session.scalars(select(Dataset).where(Dataset.owner == owner)
                           .order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def delete_dataset(session: Session, owner: str, dataset_id: uuid.UUID, data_dir: Path) -> bool:
    """Delete a dataset and its files; False if the owner has none by that id; ``DatasetInUse`` if a job needs it.

    The row is locked first (``FOR UPDATE``): a job being created for it holds
    a key-share lock on it through the link's foreign key, so the check for
    unfinished jobs sees every job committed before the delete.
    """
    dataset = session.scalars(select(Dataset).where(Dataset.owner == owner, Dataset.id == dataset_id)
                              .with_for_update()).first()
    if dataset is None:
        session.rollback()
        return False
    users = session.scalars(select(Job.id).join(JobDataset, JobDataset.job_id == Job.id)
                            .where(JobDataset.dataset_id == dataset_id,
                                   Job.status.not_in([s.value for s in TERMINAL_STATUSES]))).all()
    if users:
        session.rollback()
        raise DatasetInUse(list(users))
    sha256 = dataset.sha256
    session.delete(dataset)
    session.commit()
    remove_stored(data_dir, owner, sha256)
    return True


def dataset_view(dataset: Dataset) -> dict[str, Any]:
    """The API's view of a dataset: its summary plus id, file name, size, hash and time."""
    return {"id": dataset.id, "format": dataset.format, "filename": dataset.filename, "size_bytes": dataset.size_bytes,
            "sha256": dataset.sha256, "created_at": dataset.created_at, **dataset.summary}
