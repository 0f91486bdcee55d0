"""/v1/jobs/{id}/plots/… and /v1/compare/plot…: the pictures of ``app.plots``, drawn from stored data.

A job's plots are drawn from its stored spec, history rows and architecture
events, so they work while the job runs (the picture grows with every epoch;
``X-Plot-Epochs`` says how many it shows). The comparison chart needs finished
jobs, like ``/v1/compare``. Ownership, 404 and 422 follow the other job routes.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import Response

from app import plots, queries
from app.api.deps import CurrentOwner, OwnedJob, SessionDep
from app.api.routes.compare import IDS_PATTERN, MAX_JOBS, parse_ids, succeeded_jobs
from app.schemas import ErrorBody, ValidationErrorBody

router = APIRouter(tags=["plots"])


class RenderedPictures:
    """The last pictures drawn, by a digest of everything they are drawn from.

    A picture is a pure function of its data (the same data gives the same bytes),
    so a finished job's pictures, or a running job's between two epochs, are drawn
    once however many pages show them. The key is the data itself (hashed), not an
    id or a count, so a history rewound and recorded again can never get a stale picture.
    """

    def __init__(self, size: int = 96) -> None:
        self.size = size
        self.entries: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str, draw: Callable[[], bytes]) -> bytes:
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        picture = draw()
        with self.lock:
            self.entries[key] = picture
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return picture


PICTURES = RenderedPictures()

JobPlotName = Literal["timeline", "heatmap", "curves"]
PlotFormat = Literal["svg", "png"]
Measure = Literal["params", "macs"]

IMAGE = {"content": {"image/svg+xml": {"schema": {"type": "string"}},
                     "image/png": {"schema": {"type": "string", "format": "binary"}}}}
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such job among the caller's jobs."}}
INVALID = {422: {"model": ValidationErrorBody,
                 "description": "Unknown plot or format, or bad `ids`/`measure`; `loc` names the parameter."}}
EPOCHS_HEADER = {"X-Plot-Epochs": {"description": "Epochs of the job's history that the picture shows.",
                                   "schema": {"type": "integer"}}}


@router.get(
    "/jobs/{job_id}/plots/{plot}.{format}",
    response_class=Response,
    responses={200: {**IMAGE, "headers": EPOCHS_HEADER,
                     "description": "The picture (SVG or PNG), drawn from the history stored so far."}}
    | NOT_FOUND | INVALID,
)
def job_plot(
    job: OwnedJob,
    session: SessionDep,
    plot: Annotated[JobPlotName, Path(description="timeline (width per unit), heatmap (selected / width per "
                                                  "unit and epoch) or curves (loss, accuracy, params, MACs).")],
    format: Annotated[PlotFormat, Path(description="svg or png.")],
) -> Response:
    """The job's width timeline, selection heatmap or training curves, drawn from its stored history."""
    rows = queries.history(session, job.id)
    changes = queries.architecture_changes(session, job.id)

    def draw() -> bytes:
        history = plots.read_history(job.method, rows, changes, spec=job.spec, where="stored history")
        return plots.render_job_plot(plot, history, format)

    try:
        picture = PICTURES.get(PICTURES.key(plot, format, job.method, job.spec, rows, changes), draw)
    except plots.PlotInputError as exc:  # stored by a worker, not sent by the caller: report it as a conflict
        raise HTTPException(status.HTTP_409_CONFLICT, f"the stored history cannot be drawn: {exc}") from exc
    return Response(picture, media_type=plots.MEDIA_TYPES[format],
                    headers={"X-Plot-Epochs": str(len(rows)), "Cache-Control": "no-store"})


@router.get(
    "/compare/plot.{format}",
    response_class=Response,
    responses={200: {**IMAGE, "description": "Parameters (or MACs) against test accuracy, mean ± sd per setup."},
               404: {"model": ErrorBody, "description": "An id is not among the caller's jobs."},
               409: {"model": ErrorBody, "description": "A job has not succeeded (yet)."}} | INVALID,
)
def compare_plot(
    owner: CurrentOwner,
    session: SessionDep,
    format: Annotated[PlotFormat, Path(description="svg or png.")],
    ids: Annotated[str, Query(pattern=IDS_PATTERN, description=f"Comma-separated job ids (at most {MAX_JOBS}). "
                                                               "Jobs whose specs differ only in the seed are "
                                                               "drawn as one setup, mean ± sd.")],
    measure: Annotated[Measure, Query(description="The x axis: parameters or MACs.")] = "params",
) -> Response:
    """The comparison chart of finished jobs: the picture behind Tables 4 and 5."""
    job_ids = parse_ids(ids)
    jobs = succeeded_jobs(session, job_ids, owner)
    try:
        points = plots.points_from_results([job.result for job in jobs], where="stored results")
    except plots.PlotInputError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a stored result cannot be drawn: {exc}") from exc
    picture = PICTURES.get(PICTURES.key("comparison", format, measure, points),
                           lambda: plots.render_comparison(points, measure, format))
    return Response(picture, media_type=plots.MEDIA_TYPES[format], headers={"Cache-Control": "no-store"})
