"""What a job spec names on this server: an uploaded dataset (``data.name: upload``) and a source job (``init.job``).

The growth library reads files; a user over HTTP names a dataset or a job by
id. ``resolve_references`` checks that each belongs to the caller (another
owner's id is as unknown as a missing one) and is usable, and gives back:

* ``local``: the spec the library parses here, with the dataset's stored file
  (``{"name": "npz" | "image_folder", "path": …}``) and the source job's weights
  file (``init.weights``) on this machine;
* ``stored(spec)``: the normalised spec as the job keeps it, which names the
  dataset and the source job by id again (and the dataset's sha256: the bytes
  the job trained on), never a path; each worker localizes it again
  (``worker.store.datasets.localize_job_spec``).

Every refusal is a ``SpecError`` naming the field, so the API answers 422.
"""
from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import queries
from growth.errors import SpecError
from worker.store import artifacts
from worker.store.uploaded_datasets import get_dataset
from worker.store.models import Dataset, JobStatus

UPLOAD = "upload"
# The data-spec fields an uploaded dataset takes besides its id (the rest come from the dataset).
UPLOAD_FIELDS = ("image_size", "val_fraction", "test_fraction", "augment", "limit")


@dataclass
class Resolved:
    local: dict[str, Any]
    dataset: Dataset | None = None
    source_job: uuid.UUID | None = None
    _upload_fields: dict[str, Any] = field(default_factory=dict)

    def stored(self, normalised: dict[str, Any]) -> dict[str, Any]:
        """The normalised (library) spec with the dataset and source job named by id instead of by path."""
        spec = copy.deepcopy(normalised)
        if self.dataset is not None:
            data = spec["data"]
            spec["data"] = {"name": UPLOAD, "id": str(self.dataset.id), "sha256": self.dataset.sha256,
                            "format": self.dataset.format,
                            **{key: data[key] for key in UPLOAD_FIELDS if key in data}}
        if self.source_job is not None:
            spec["init"] = {"job": str(self.source_job), "weights": None}
        return spec


def resolve_references(raw: Any, *, session: Session, owner: str, data_dir: Path, artifact_dir: Path) -> Resolved:
    if not isinstance(raw, Mapping):
        return Resolved(local=raw)  # parse_spec names the problem
    local = dict(raw)
    resolved = Resolved(local=local)
    data = raw.get("data")
    if isinstance(data, Mapping) and data.get("name") == UPLOAD:
        resolved.dataset = _dataset(data, session, owner)
        local["data"] = {"name": resolved.dataset.format, "path": str(Path(data_dir) / resolved.dataset.path),
                         **{key: data[key] for key in UPLOAD_FIELDS if key in data}}
    elif isinstance(data, Mapping) and data.get("name") in ("npz", "image_folder"):
        raise SpecError("data.path", f"{data.get('name')} data over HTTP come from an upload: send the file with "
                                     f"`netgrow data upload FILE` (POST /v1/datasets) and use "
                                     f"{{\"name\": \"upload\", \"id\": DATASET_ID}}")
    init = raw.get("init")
    if isinstance(init, Mapping):
        if init.get("weights") is not None:
            raise SpecError("init.weights", "is a file path on the machine that runs the job and is not accepted "
                                            "over HTTP; use init.job with the id of one of your succeeded jobs")
        if init.get("job") is not None:
            resolved.source_job = _source_job(init["job"], session, owner)
            local["init"] = {**init, "weights": str(artifacts.weights_path(artifact_dir, resolved.source_job))}
    return resolved


def _dataset(data: Mapping[str, Any], session: Session, owner: str) -> Dataset:
    unknown = sorted(set(data) - {"name", "id", *UPLOAD_FIELDS})
    if unknown:
        raise SpecError(f"data.{unknown[0]}", f"an uploaded dataset takes only id and {', '.join(UPLOAD_FIELDS)}")
    dataset_id = _uuid(data.get("id"), "data.id", "the id `netgrow data upload` printed (GET /v1/datasets)")
    dataset = get_dataset(session, owner, dataset_id)
    if dataset is None:
        raise SpecError("data.id", f"no dataset {dataset_id} among yours: upload it with `netgrow data upload FILE` "
                                   f"and use the id it prints (`netgrow data list` shows yours)")
    return dataset


def _source_job(value: Any, session: Session, owner: str) -> uuid.UUID:
    job_id = _uuid(value, "init.job", "the id of one of your succeeded jobs")
    job = queries.get_job(session, job_id, owner)
    if job is None:
        raise SpecError("init.job", f"no job {job_id} among yours; start from one of your own succeeded jobs")
    if job.status != JobStatus.SUCCEEDED:
        hint = ("wait until it has finished" if job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                else "start from a job that succeeded")
        raise SpecError("init.job", f"job {job_id} is {job.status}, so it has no grown network yet: {hint}")
    return job_id


def _uuid(value: Any, field_name: str, what: str) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise SpecError(field_name, f"must be {what}, got {value!r}")
