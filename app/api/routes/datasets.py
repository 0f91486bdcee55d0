"""/v1/datasets: upload a dataset (npz, or an image folder as .zip/.tar), list, inspect and delete it."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import CurrentOwner, SessionDep, SettingsDep
from app.api.errors import spec_validation_error
from app.schemas import DatasetPage, DatasetRead, ErrorBody, ValidationErrorBody
from app.upload_stream import receive_file
from growth.errors import DatasetTooLarge, SpecError
from worker.store import uploaded_datasets as datasets_store
from worker.store.uploads import UploadLimits, check_upload, staging_dir

router = APIRouter(prefix="/datasets", tags=["datasets"])

CONTENT_TOO_LARGE = 413  # Starlette renamed its constant (HTTP_413_CONTENT_TOO_LARGE) in versions we still allow

DatasetId = Annotated[uuid.UUID, Path(description="The dataset's id (a UUID).")]
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such dataset among the caller's datasets."}}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "an .npz file (x, y, optional x_test, y_test, classes) or a "
                                                   ".zip/.tar/.tar.gz of an image folder (one sub-folder per class)"}},
        }}},
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"model": DatasetRead, "description": "The same bytes were uploaded before: that dataset."},
        400: {"model": ErrorBody, "description": "The multipart body is malformed or has no field 'file'."},
        413: {"model": ErrorBody, "description": "The file, or what it unpacks to, is over this server's limit."},
        415: {"model": ErrorBody, "description": "The body is not multipart/form-data."},
        422: {"model": ValidationErrorBody, "description": "The file is not a usable dataset; `msg` says why."},
    },
)
async def upload_dataset(request: Request, response: Response, owner: CurrentOwner, session: SessionDep,
                         settings: SettingsDep) -> DatasetRead:
    """Upload a dataset; it is checked completely before it is stored (201), or refused with what to fix.

    The body streams to disk (never held in memory) and is limited by
    `NETGROW_MAX_UPLOAD_BYTES`. Every array or image is read; labels must be in
    range and name at least two classes; archives must not hold `../` paths,
    absolute paths or links, nor unpack to more than
    `NETGROW_MAX_UPLOAD_UNPACKED_BYTES`. Stored by sha256: the same bytes again
    answer 200 with the existing dataset.
    """
    received = await receive_file(request, staging_dir(settings.data_dir), settings.max_upload_bytes)
    limits = UploadLimits(max_unpacked_bytes=settings.max_upload_unpacked_bytes, max_files=settings.max_upload_files)
    try:
        checked = await run_in_threadpool(check_upload, received.path, received.filename, settings.data_dir, limits)
    except DatasetTooLarge as exc:
        raise HTTPException(CONTENT_TOO_LARGE, f"{exc.field}: {exc.message}") from exc
    except SpecError as exc:
        raise spec_validation_error(exc, "dataset_error") from exc
    stored = await run_in_threadpool(
        datasets_store.store_dataset, session, owner=owner, checked=checked, sha256=received.sha256,
        size=received.size, filename=received.filename, data_dir=settings.data_dir)
    if not stored.created:
        response.status_code = status.HTTP_200_OK
    return DatasetRead.model_validate(datasets_store.dataset_view(stored.dataset))


@router.get("")
def list_datasets(owner: CurrentOwner, session: SessionDep, settings: SettingsDep,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
                  offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> DatasetPage:
    """The caller's datasets, newest first."""
    limit = min(limit, settings.api_page_size_max)
    rows, total = datasets_store.list_datasets(session, owner, limit=limit, offset=offset)
    return DatasetPage(items=[DatasetRead.model_validate(datasets_store.dataset_view(row)) for row in rows],
                       total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", responses=NOT_FOUND)
def read_dataset(dataset_id: DatasetId, owner: CurrentOwner, session: SessionDep) -> DatasetRead:
    """Shape, classes, sample counts, size and sha256 of one of the caller's datasets."""
    dataset = datasets_store.get_dataset(session, owner, dataset_id)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {dataset_id}")
    return DatasetRead.model_validate(datasets_store.dataset_view(dataset))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "A queued or running job uses it."}})
def delete_dataset(dataset_id: DatasetId, owner: CurrentOwner, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete a dataset and its files; refused (409) while a queued or running job uses it."""
    try:
        deleted = datasets_store.delete_dataset(session, owner, dataset_id, settings.data_dir)
    except datasets_store.DatasetInUse as exc:
        jobs = ", ".join(str(job_id) for job_id in exc.job_ids[:5])
        raise HTTPException(status.HTTP_409_CONFLICT, f"dataset {dataset_id} is used by unfinished job(s) {jobs}; "
                                                      f"cancel them or wait until they end, then delete it") from exc
    if not deleted:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {dataset_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
