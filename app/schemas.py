"""Request and response bodies of the HTTP API (pydantic v2).

Response models are precise on purpose: the OpenAPI schema FastAPI derives from
them is what clients and the Schemathesis tests check every response against.
A job spec is not a pydantic model: ``growth.spec.parse_spec`` is its one
validator, and its errors come back in FastAPI's ``{"detail": [{"loc", "msg",
"type"}]}`` shape. ``job_spec_schema()`` describes it for the OpenAPI document,
derived from the spec's dataclasses so that the two cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from worker.store.models import JobStatus

# The stored JobStatus, as the inline string enum the OpenAPI document has always shown.
JobStatusName = Literal[tuple(status.value for status in JobStatus)]  # type: ignore[valid-type]


def _finite_or_none(value: Any) -> Any:
    # A diverged run can store NaN/inf losses; JSON has no such numbers and
    # Starlette refuses to encode them, so they are reported as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FiniteFloat = Annotated[float | None, BeforeValidator(_finite_or_none)]


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- errors ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Any error but a validation error: ``{"detail": "what went wrong"}``."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where the error is, e.g. ["body", "model", "layers", 2].')
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: the request is well-formed HTTP but names an invalid field."""

    detail: list[FieldError]


# --- jobs -----------------------------------------------------------------------------


class JobLinks(_Response):
    self: str
    history: str
    events: str
    architecture: str
    cancel: str
    retry: str
    weights: str
    onnx: str
    result: str


class JobProgress(_Response):
    epoch: int = Field(ge=0, description="Epochs recorded so far, over all phases.")
    total: int = Field(ge=0, description="Epochs the job runs at most (all phases).")
    fraction: float = Field(ge=0, le=1)


class JobMetrics(_Response):
    params: int | None = None
    macs: int | None = None
    test_accuracy: FiniteFloat = None
    wall_seconds: FiniteFloat = None


class JobRead(_Response):
    id: uuid.UUID
    method: str
    status: JobStatusName
    spec: dict[str, Any] = Field(description="The normalised job spec, every default filled in.")
    progress: JobProgress
    current_widths: dict[str, int] | None = Field(description="Width of every growth unit after the last epoch.")
    metrics: JobMetrics
    attempts: int
    max_attempts: int
    cancel_requested: bool
    error: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


class JobPage(_Response):
    items: list[JobRead]
    total: int = Field(ge=0, description="Jobs matching the filters, over all pages.")
    limit: int
    offset: int


# --- history and architecture ---------------------------------------------------------


class UnitRecord(_Response):
    name: str
    width: int
    selected: int
    ratio: FiniteFloat
    grew: int


class EpochRecord(_Response):
    epoch: int
    phase: str
    train_loss: FiniteFloat
    val_accuracy: FiniteFloat
    lr: FiniteFloat
    params: int
    macs: int
    seconds: FiniteFloat
    sparsity: FiniteFloat = None
    support_val_accuracy: FiniteFloat = Field(
        None, description="Validation accuracy of the network restricted to Γ's support (BatchNorm recalibrated); "
                          "null for methods without Γ.")
    units: list[UnitRecord]


class JobHistory(_Response):
    job_id: uuid.UUID
    status: JobStatusName
    epochs: list[EpochRecord] = Field(description="In epoch order; `units` only lists the requested units.")


class JobResult(_Response):
    """The result JSON of ``growth.run`` and ``netgrow grow --out`` (docs/architecture.md, "Result JSON").

    Besides timing, it differs from the library's only where the server cannot be the
    same: ``spec`` (and ``init``) name uploaded datasets and source jobs by id, as the
    job stores them; ``weights`` is the weights' download path, not a file; non-finite
    numbers are null.
    """

    model_config = ConfigDict(extra="allow")  # methods add their own fields (group_sparsity, sensitivity)

    method: str
    spec: dict[str, Any] = Field(description="The normalised job spec, as the job stores it.")
    final: dict[str, Any] = Field(description="Widths, params, MACs, accuracies, model spec, preprocessing.")
    history: list[EpochRecord] = Field(description="Every epoch in order, every unit; the rows of `/history`.")
    events: list[dict[str, Any]] = Field(description="Architecture changes: `{epoch, change, units}`.")
    epochs: int
    wall_seconds: FiniteFloat
    weights: str = Field(description="Where to download the final weights (GET, safetensors).")


class JobArchitecture(_Response):
    job_id: uuid.UUID
    status: JobStatusName
    epoch: int = Field(description="Epochs recorded when this architecture was current.")
    final: bool = Field(description="True once the job has succeeded: this is the grown network.")
    model: dict[str, Any] = Field(description="A model spec, valid as the `model` of a new job.")


# --- comparison -----------------------------------------------------------------------


class Table4Row(BaseModel):
    name: str = Field(description="A unit (conv1, stage1.block1, …) or Params, MACs, Test accuracy, "
                                  "Wall time (s), Epochs.")
    values: list[int | float | None] = Field(description="One per job, in column order; null: the job lacks the unit.")


class Table4(BaseModel):
    columns: list[str]
    rows: list[Table4Row]


class Table5Row(BaseModel):
    run: str
    method: str
    params: int
    test_accuracy: float
    relative_params: float | None = Field(description="params / the first job's params.")


class ComparisonRead(BaseModel):
    """Table 4 (final width of every unit) and Table 5 (parameters, accuracy) of the DessiLBI paper."""

    job_ids: list[uuid.UUID] = Field(description="The jobs, in column order.")
    table4: Table4
    table5: list[Table5Row]


# --- health ---------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description='"ok", "skipped" or why a check failed ("database unreachable", '
                                               '"broker unreachable"; the details are in the server log).')


# --- the job spec, for the OpenAPI document ---------------------------------------------

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _type_schema(hint: Any) -> dict[str, Any]:
    if hint is Any:
        return {}
    if dataclasses.is_dataclass(hint):
        return _dataclass_schema(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(arg) for arg in args if arg is not type(None)]
        return {"anyOf": [*options, {"type": "null"}]} if type(None) in args else {"anyOf": options}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    return {"type": _JSON_TYPES[hint]}


def _section_schema(section: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section)
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(section):
        schema = _type_schema(hints[field.name])
        lo, hi, lo_open, hi_open = field.metadata.get("bounds", (None, None, False, False))
        if lo is not None:
            schema["exclusiveMinimum" if lo_open else "minimum"] = lo
        if hi is not None:
            schema["exclusiveMaximum" if hi_open else "maximum"] = hi
        if field.metadata.get("choices"):
            schema["enum"] = list(field.metadata["choices"])
        if field.metadata.get("pattern"):
            schema["pattern"] = field.metadata["pattern"]  # the parser checks the same expression
        if field.metadata.get("hint"):
            schema["description"] = field.metadata["hint"]
        properties[field.name] = schema
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    doc = (section.__doc__ or "").strip()
    if doc and not doc.startswith(f"{section.__name__}("):  # not the signature dataclasses put there
        schema["description"] = doc.splitlines()[0]
    return schema


def _dataclass_schema(cls: type, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in leave_out]
    return {"type": "object", "properties": {f.name: _type_schema(hints[f.name]) for f in fields},
            "required": [f.name for f in fields]}


def event_stream_schema() -> dict[str, Any]:
    """One SSE message of ``GET /v1/jobs/{id}/events``: its ``event`` name, ``id`` and JSON ``data``.

    The ``data`` schemas come from the growth events the worker records
    (``growth.events``), so the document says what the stream carries.
    """
    from growth.events import ArchitectureChanged, EpochEnd

    def message(event: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": ["event", "id", "data"],
                "properties": {"event": {"const": event}, "id": {"type": "string", "pattern": "^[0-9]+$"},
                               "data": data}}

    state = {"type": "object", "required": ["status"],
             "properties": {"status": {"enum": ["queued", "running", "succeeded", "failed", "canceled"]}}}
    # The checkpoint path is left out of epoch events: it is a path inside the artifact store.
    return {"oneOf": [message("state", state),
                      message("epoch", _dataclass_schema(EpochEnd, leave_out=("checkpoint",))),
                      message("architecture", _dataclass_schema(ArchitectureChanged))]}


def job_spec_schema() -> dict[str, Any]:
    """JSON schema of a job spec: the top level, the flat sections, and the model and data specs."""
    from growth.data.spec import data_json_schema
    from growth.models import model_json_schema
    from growth.spec import METHODS, JobSpec

    hints = typing.get_type_hints(JobSpec)
    sections = {name: _section_schema(hint) for name, hint in hints.items() if dataclasses.is_dataclass(hint)}
    return {
        "title": "JobSpec",
        "type": "object",
        "required": ["method", "data"],
        "additionalProperties": False,
        "properties": {
            "method": {"enum": list(METHODS)},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "model": {**model_json_schema(),
                      "description": 'e.g. {"family": "vgg", "layers": [8, "M", 8]}; required unless init is given '
                                     '(the network then comes from the source job)'},
            "data": {**_http_data_schema(data_json_schema()), "description": 'e.g. {"name": "digits"}'},
            "init": {"anyOf": [
                {"title": "Init", "type": "object", "additionalProperties": False, "required": ["job"],
                 "properties": {"job": {"type": "string", "format": "uuid",
                                        "description": "start from this succeeded job's grown network"}}},
                {"type": "null", "description": "start from the model spec (the default)"}]},
            **sections,
        },
    }


def _http_data_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Over HTTP a user's own data come from an upload (by id), never from a path on the server."""
    variants = [variant for variant in schema["oneOf"] if variant["title"] != "UserData"]
    common = {key: value for key, value in variants[0]["properties"].items() if key not in ("name", "root")}
    upload = {"title": "UploadedData", "type": "object", "additionalProperties": False, "required": ["name", "id"],
              "properties": {"name": {"const": "upload"},
                             "id": {"type": "string", "format": "uuid", "description": "from POST /v1/datasets"},
                             **common}}
    return {**schema, "oneOf": [*variants, upload]}


# --- datasets ---------------------------------------------------------------------------


class DatasetRead(_Response):
    """An uploaded dataset: what was checked, and its sha256 (the same bytes are one dataset)."""

    id: uuid.UUID
    format: Literal["npz", "image_folder"]
    filename: str = Field(description="the uploaded file's name")
    size_bytes: int = Field(description="bytes uploaded")
    sha256: str = Field(description="sha256 of the uploaded bytes")
    channels: int
    image_shape: list[int] | None = Field(description="C, H, W as stored; null when the images differ in size "
                                                      "(a job then sets data.image_size)")
    num_classes: int
    class_names: list[str]
    train_samples: int
    test_samples: int = Field(description="0: no test split of its own (a job carves one out)")
    pixel_dtype: str
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetRead]
    total: int
    limit: int
    offset: int
