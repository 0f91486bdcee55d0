"""/v1/compare: Tables 4 and 5 of the DessiLBI paper over finished jobs (growth.compare on stored results)."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session

from app import queries
from app.api.deps import CurrentOwner, SessionDep
from app.schemas import ComparisonRead, ErrorBody, ValidationErrorBody
from growth.compare import compare
from growth.errors import SpecError
from worker.store.models import Job, JobStatus

router = APIRouter(tags=["compare"])

MAX_JOBS = 50

TEXT = {"schema": {"type": "string"}}


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
IDS_PATTERN = f"^{_UUID}(,{_UUID}){{0,{MAX_JOBS - 1}}}$"


def parse_ids(ids: str) -> list[uuid.UUID]:
    """``"a,b,c"`` (already matched against IDS_PATTERN) → UUIDs in order, duplicates dropped."""
    return list(dict.fromkeys(uuid.UUID(item) for item in ids.split(",")))


def succeeded_jobs(session: Session, job_ids: list[uuid.UUID], owner: str) -> list[Job]:
    """The caller's jobs in ``job_ids`` order: 404 naming any that are not theirs, 409 any not succeeded."""
    jobs = queries.get_jobs(session, job_ids, owner)
    missing = [str(job_id) for job_id in job_ids if job_id not in jobs]
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {', '.join(missing)}")
    unfinished = [f"{job_id} ({jobs[job_id].status})" for job_id in job_ids
                  if jobs[job_id].status != JobStatus.SUCCEEDED]
    if unfinished:
        raise HTTPException(status.HTTP_409_CONFLICT, f"only succeeded jobs can be compared: {', '.join(unfinished)}")
    return [jobs[job_id] for job_id in job_ids]


def column_labels(methods: list[str], ids: list[uuid.UUID]) -> list[str]:
    labels = [f"{method} {str(job_id)[:8]}" for method, job_id in zip(methods, ids)]
    if len(set(labels)) < len(labels):  # two ids sharing 8 hex digits: spell them out
        labels = [f"{method} {job_id}" for method, job_id in zip(methods, ids)]
    return labels


@router.get(
    "/compare",
    response_model=ComparisonRead,
    responses={
        200: {"content": {"text/markdown": TEXT, "text/csv": TEXT},
              "description": "JSON (both tables), Markdown (both tables) or CSV (the table named by `table`)."},
        404: {"model": ErrorBody, "description": "An id is not among the caller's jobs."},
        409: {"model": ErrorBody, "description": "A job has not succeeded (yet)."},
        422: {"model": ValidationErrorBody, "description": "`ids` is not a comma-separated list of job ids."},
    },
)
def compare_jobs(
    owner: CurrentOwner,
    session: SessionDep,
    ids: Annotated[str, Query(pattern=IDS_PATTERN, description=f"Comma-separated job ids (at most {MAX_JOBS}); "
                                                               "the first is the baseline of Table 5.")],
    format: Annotated[Literal["json", "markdown", "csv"], Query()] = "json",
    table: Annotated[Literal["table4", "table5"] | None, Query(
        description="Only this table (Markdown); which table (CSV, default table4).")] = None,
) -> Response | ComparisonRead:
    """Final unit widths, parameters, MACs and accuracy of finished jobs, side by side."""
    job_ids = parse_ids(ids)
    ordered = succeeded_jobs(session, job_ids, owner)
    try:
        comparison = compare([job.result for job in ordered],
                             labels=column_labels([job.method for job in ordered], job_ids))
    except SpecError as exc:  # a stored result that compare cannot read: report it, it is not the caller's input
        raise HTTPException(status.HTTP_409_CONFLICT, f"a stored result cannot be compared: {exc}") from exc
    if format == "markdown":
        return PlainTextResponse(comparison.to_markdown(table), media_type="text/markdown")
    if format == "csv":
        return PlainTextResponse(comparison.to_csv(table or "table4"), media_type="text/csv")
    return ComparisonRead(job_ids=job_ids, **comparison.to_json())
