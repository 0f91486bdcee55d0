"""/v1/jobs: submit, list, inspect, follow, cancel and retry growth jobs, and fetch their results and weights."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import StringConstraints
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from app import queries
from app.api.deps import CurrentOwner, JobId, OwnedJob, SessionDep, SessionFactoryDep, SettingsDep
from app.api.errors import spec_validation_error, validation_error
from app.limits import (
    SUBMISSION_WINDOW_SECONDS,
    LimitExceeded,
    OwnerLimitReached,
    check_owner_limits,
    parse_submission,
)
from app.queries import StoredEvent
from app.references import resolve_references
from app.schemas import (
    ErrorBody,
    JobArchitecture,
    JobHistory,
    JobLinks,
    JobMetrics,
    JobPage,
    JobProgress,
    JobRead,
    JobResult,
    JobStatusName,
    ValidationErrorBody,
    event_stream_schema,
    job_spec_schema,
)
from app.sse import job_event_stream
from growth.errors import SpecError
from growth.spec import METHODS
from worker.store import artifacts
from worker.store import jobs as jobs_store
from worker.store.models import TERMINAL_STATUSES, Job, JobStatus
from worker.store.dispatch import enqueue
from worker.store.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

Method = Literal[METHODS]  # type: ignore[valid-type]
# Bounds that keep query values inside a 32-bit integer column on every backend.
MAX_QUERY_INT = 2**31 - 1
# Event ids are BIGINT (64-bit): a Last-Event-ID beyond that cannot be bound in a query on SQLite.
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
UnitName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]

NOT_FOUND = {404: {"model": ErrorBody, "description": "No such job among the caller's jobs."}}
INVALID = {422: {"model": ValidationErrorBody, "description": "A field is invalid; `loc` names it."}}

SPEC_EXAMPLE = {
    "method": "grow",
    "seed": 0,
    "model": {"family": "vgg", "layers": [4, "M", 4]},
    "data": {"name": "digits"},
    "train": {"epochs": 3, "batch_size": 128},
    "growth": {"every": 1, "finetune_epochs": 1, "max_width": 64},
}


def job_read(job: Job, request: Request) -> JobRead:
    base = request.app.url_path_for("read_job", job_id=str(job.id))
    total = job.progress_total
    return JobRead(
        id=job.id,
        method=job.method,
        status=job.status,
        spec=job.spec,
        progress=JobProgress(epoch=job.progress_epoch, total=total,
                             fraction=min(1.0, job.progress_epoch / total) if total else 0.0),
        current_widths=job.current_widths,
        metrics=JobMetrics(params=job.params, macs=job.macs, test_accuracy=job.test_accuracy,
                           wall_seconds=job.wall_seconds),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        error=job.error,
        worker=job.worker,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        links=JobLinks(self=base, history=f"{base}/history", events=f"{base}/events",
                       architecture=f"{base}/architecture", cancel=f"{base}/cancel", retry=f"{base}/retry",
                       weights=f"{base}/artifacts/weights", onnx=f"{base}/artifacts/model.onnx",
                       result=f"{base}/result"),
    )


def _same_spec(stored: dict[str, Any], submitted: dict[str, Any]) -> bool:
    # Compare as stored JSON: the database hands back what json.dumps wrote.
    return json.dumps(stored, sort_keys=True) == json.dumps(json.loads(json.dumps(submitted)), sort_keys=True)


def _enqueue_or_503(job: Job, settings: Settings, *, repeat_hint: str = "") -> None:
    """Send the job's id to the workers; 503 if the broker is down, although the job is stored and queued.

    The failed send is recorded on the job (``worker.store.dispatch.enqueue``), and the
    reaper in every worker sends it once the broker answers again, so the
    client does not have to do anything for the job to run.
    """
    try:
        enqueue(job.id, settings, job.queue)
    except Exception as exc:
        log.exception("job %s: stored and queued, but its id could not be sent to the broker", job.id)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"job {job.id} is stored and queued, but the broker is unreachable "
                            f"({type(exc).__name__}); the job will be sent to a worker automatically when the "
                            f"broker is back{repeat_hint}") from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": job_spec_schema()}}}},
    responses={
        200: {"model": JobRead, "description": "A retry with an Idempotency-Key already used: the same job."},
        400: {"model": ErrorBody, "description": "The body could not be decoded (JSON must be UTF-8)."},
        413: {"model": ErrorBody, "description": "The body is larger than the server's limit."},
        415: {"model": ErrorBody, "description": "The body was not sent as `Content-Type: application/json`."},
        429: {"model": ErrorBody,
              "description": "The owner is at a per-owner limit (jobs queued or running, submissions per "
                             "minute, stored artifact bytes); `Retry-After` says when to try again."},
        422: {"model": ValidationErrorBody,
              "description": "Invalid spec, a spec above the server's limits, or an Idempotency-Key reused "
                             "for a different spec; `loc` names the field."},
        503: {"model": ErrorBody,
              "description": "Stored and queued, but the broker is unreachable: the job is sent to a worker when "
                             "the broker is back. Repeating the request with the same Idempotency-Key returns it."},
    },
)
def submit_job(
    body: Annotated[dict[str, Any], Body(
        description="A job spec, the same JSON as `netgrow grow SPEC.json` (every field and default: growth/spec.py).",
        openapi_examples={"small growth job": {"value": SPEC_EXAMPLE}})],
    request: Request,
    response: Response,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[IdempotencyKey | None, Header(
        alias="Idempotency-Key",
        description="Makes retries safe: the same key (per API key owner) returns the same job.")] = None,
) -> JobRead:
    """Validate a job spec against the server's limits, store it as a queued job and hand it to a worker."""
    try:
        resolved = resolve_references(body, session=session, owner=owner, data_dir=settings.data_dir,
                                      artifact_dir=settings.artifact_dir)
        spec = parse_submission(resolved.local, settings)
    except SpecError as exc:
        raise spec_validation_error(exc, "limit_exceeded" if isinstance(exc, LimitExceeded) else "spec_error")
    # A replay of an Idempotency-Key is not a new job: it is answered whatever the owner's limits say.
    if idempotency_key is None or queries.job_by_idempotency_key(session, owner, idempotency_key) is None:
        try:
            check_owner_limits(queries.owner_usage(session, owner, window_seconds=SUBMISSION_WINDOW_SECONDS),
                               settings)
        except OwnerLimitReached as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, exc.message, headers=headers) from exc
    stored = resolved.stored(spec.to_dict())
    job, created = jobs_store.create_job(session, owner=owner, spec=spec, max_attempts=settings.max_attempts,
                                         idempotency_key=idempotency_key, queue=settings.queue, stored_spec=stored,
                                         dataset_id=resolved.dataset.id if resolved.dataset is not None else None)
    if not created and not _same_spec(job.spec, stored):
        raise validation_error(["header", "Idempotency-Key"],
                               f"this key was already used for job {job.id} with a different spec; "
                               "use a new key for a new job", "idempotency_key_reused")
    if created or job.status == JobStatus.QUEUED:
        # Sending a queued job's id again is harmless (workers claim it in the database), and
        # it heals a submission whose first enqueue failed sooner than the reaper would.
        _enqueue_or_503(job, settings, repeat_hint=(
            "; sending this request again with the same Idempotency-Key returns this job" if idempotency_key
            else "; sending this request again without an Idempotency-Key would store a second job"))
    read = job_read(job, request)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = read.links.self
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return read


@router.get("")
def list_jobs(
    request: Request,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    status_: Annotated[JobStatusName | None, Query(alias="status", description="Only jobs in this state.")] = None,
    method: Annotated[Method | None, Query(description="Only jobs of this method.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_QUERY_INT,
                                description="Page size; capped at the server's maximum (the page's `limit` "
                                            "says what was used).")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_QUERY_INT, description="Jobs to skip, newest first.")] = 0,
) -> JobPage:
    """The caller's jobs, newest first, one page at a time, with the total matching the filters."""
    limit = min(limit, settings.api_page_size_max)
    jobs, total = queries.list_jobs(session, queries.JobFilter(owner, status_, method), limit=limit, offset=offset)
    return JobPage(items=[job_read(job, request) for job in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", responses=NOT_FOUND)
def read_job(job: OwnedJob, request: Request) -> JobRead:
    """Status, progress, current unit widths, metrics, attempts and error of one job."""
    return job_read(job, request)


@router.get("/{job_id}/history", response_model=JobHistory, responses=NOT_FOUND | INVALID)
def read_history(
    job: OwnedJob,
    session: SessionDep,
    unit: Annotated[list[UnitName] | None, Query(description="Only these units (repeatable), e.g. conv1.")] = None,
    from_epoch: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT, description="First epoch (0-based).")] = None,
    to_epoch: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT, description="Last epoch, inclusive.")] = None,
) -> Response:
    """Per-epoch metrics with the width and selected filters of every unit: the filter-configuration history."""
    epochs = queries.history(session, job.id, units=unit or (), from_epoch=from_epoch, to_epoch=to_epoch)
    # Serialized as read: the rows come from typed columns, and validating thousands of unit rows
    # again would cost more than the queries (bench/api_load.py). Non-finite floats become null.
    body = {"job_id": job.id, "status": job.status, "epochs": epochs}
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")


@router.get("/{job_id}/result", response_model=JobResult,
            responses=NOT_FOUND | {409: {"model": ErrorBody, "description": "The job has not succeeded."}})
def read_result(job: OwnedJob, request: Request, session: SessionDep) -> Response:
    """The result JSON that `growth.run` and `netgrow grow --out` give for the job's spec, once it succeeded."""
    if job.status != JobStatus.SUCCEEDED:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"job {job.id} is {job.status}; its result exists once it succeeded")
    document = queries.job_result(session, job)
    document["weights"] = request.app.url_path_for("download_weights", job_id=str(job.id))
    # Serialized as read, like the history; JSON has no NaN or infinity: they become null.
    return Response(to_json(document, inf_nan_mode="null"), media_type="application/json")


@router.get("/{job_id}/architecture", responses=NOT_FOUND)
def read_architecture(job: OwnedJob) -> JobArchitecture:
    """The job's current model spec (the grown one once it succeeded), usable as the `model` of a new job."""
    model = job.current_model or job.spec["model"]
    return JobArchitecture(job_id=job.id, status=job.status, epoch=job.progress_epoch,
                           final=job.status == JobStatus.SUCCEEDED, model=model)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"},
                                                        "itemSchema": event_stream_schema()}},
                     "description": "`event: state|epoch|architecture`, `id:` the event's id, `data:` JSON; "
                                    "the stream ends after the terminal state event."}} | NOT_FOUND,
)
async def stream_events(
    job_id: JobId,
    owner: CurrentOwner,
    request: Request,
    sessions: SessionFactoryDep,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID",
        description="Resume after this event id (sent by SSE clients on reconnect); a value that cannot be "
                    "an event id is ignored and the stream starts from the first event.")] = None,
) -> StreamingResponse:
    """Server-Sent Events: every state change, epoch and architecture change of the job, live.

    Each poll takes a pooled connection for one query and gives it back, so an
    open stream holds no connection (and no thread) while it waits.
    """
    def owned() -> bool:
        with sessions() as session:
            return queries.get_job(session, job_id, owner) is not None

    if not await run_in_threadpool(owned):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    after = _resume_after(last_event_id)

    def events_after(cursor: int) -> list[StoredEvent]:
        with sessions() as session:
            return queries.events_after(session, job_id, cursor)

    def job_is_finished() -> bool:
        with sessions() as session:
            return queries.job_status(session, job_id) in TERMINAL_STATUSES

    stream = job_event_stream(events_after, job_is_finished, last_event_id=after,
                              poll_seconds=request.app.state.sse_poll_seconds,
                              heartbeat_seconds=request.app.state.sse_heartbeat_seconds)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _resume_after(last_event_id: str | None) -> int:
    """The event id a stream resumes after: ``Last-Event-ID`` if it can be one of ours, else 0 (from the start).

    Decided before the 200 starts. A value that cannot be an event id (not a decimal number, or beyond
    the 64-bit id column) is ignored rather than refused: an EventSource treats any non-200 answer as
    final and stops reconnecting, while replaying from the first event only repeats what it may have.
    """
    value = (last_event_id or "").strip()
    if not _EVENT_ID.fullmatch(value):
        return 0
    after = int(value)
    return after if after <= MAX_EVENT_ID else 0


@router.post(
    "/{job_id}/cancel",
    responses=NOT_FOUND | {409: {"model": ErrorBody, "description": "The job has already finished."}},
)
def cancel_job(job: OwnedJob, request: Request, session: SessionDep) -> JobRead:
    """Cancel a job: a queued one at once, a running one at its next batch boundary (its history stays)."""
    if job.status in TERMINAL_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} has already {job.status}")
    canceled = jobs_store.request_cancel(session, job.id)
    assert canceled is not None  # the job exists: OwnedJob just loaded it
    return job_read(canceled, request)


@router.post(
    "/{job_id}/retry",
    responses=NOT_FOUND | {409: {"model": ErrorBody, "description": "Only failed or canceled jobs are retried."},
                           503: {"model": ErrorBody, "description": "Re-queued, but the broker is unreachable: "
                                                                     "the job is sent when the broker is back."}},
)
def retry_job(job: OwnedJob, request: Request, session: SessionDep, settings: SettingsDep) -> JobRead:
    """Queue a failed or canceled job again; it resumes after its last checkpointed epoch."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"job {job.id} is {job.status}; only failed or canceled jobs can be retried")
    requeued = jobs_store.retry_job(session, job.id, extra_attempts=settings.max_attempts)
    if requeued is None:  # it changed state between the read and the update
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is no longer failed or canceled")
    _enqueue_or_503(requeued, settings)
    return job_read(requeued, request)


@router.get(
    "/{job_id}/artifacts/weights",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The final state_dict as safetensors (the model spec is in its metadata)."},
               409: {"model": ErrorBody, "description": "The job has not succeeded."}} | NOT_FOUND,
)
def download_weights(job: OwnedJob, session: SessionDep) -> FileResponse:
    """The grown network's final weights (safetensors); its header metadata holds the model spec."""
    if job.status != JobStatus.SUCCEEDED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.status}; weights exist once it succeeded")
    artifact = queries.weights_artifact(session, job.id)
    if artifact is None or not Path(artifact.path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the weights of job {job.id} are no longer stored")
    return FileResponse(artifact.path, media_type="application/octet-stream", filename=f"{job.id}.safetensors",
                        headers={"X-Content-SHA256": artifact.sha256})


@router.get(
    "/{job_id}/artifacts/model.onnx",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The grown network as ONNX: input `images` (N×C×H×W float32 pixels in [0, 1]), "
                                    "output `logits` (N×K); the job's normalisation is part of the graph."},
               409: {"model": ErrorBody, "description": "The job has not succeeded, or cannot be exported."},
               501: {"model": ErrorBody, "description": "This server lacks the onnx packages."}} | NOT_FOUND,
)
def download_onnx(job: OwnedJob, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The grown network as an ONNX file that runs without netgrow (exported on first request, then kept)."""
    from worker.store.onnx_export import ExportUnavailable, NotExportable, export_weights_file

    if job.status != "succeeded":
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.status}; its network can be exported "
                                                      f"once it succeeded")
    artifact = queries.weights_artifact(session, job.id)
    if artifact is None or not Path(artifact.path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the weights of job {job.id} are no longer stored")
    preprocessing = ((job.result or {}).get("final") or {}).get("preprocessing")
    try:
        path = export_weights_file(Path(artifact.path), artifacts.onnx_path(settings.artifact_dir, job.id),
                                   preprocessing)
    except ExportUnavailable as exc:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(exc)) from exc
    except NotExportable as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id}: {exc}") from exc
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job.id}.onnx")
