"""Starting a job from a grown network: ``init: {"weights": PATH}`` (a netgrow safetensors file).

A netgrow weights file carries the network's model spec in its metadata, so
the file alone rebuilds the architecture. A job that starts from it takes its
``model`` from the file: a ``model`` the job states as well must agree with
it field by field, and the job's data must give the images and classes the
network was built for. ``init.job`` names the service job the weights came
from; only the service resolves it (to that job's weights file).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from growth.errors import SpecError

INIT_FIELDS = ("weights", "job")


def validate_init_spec(raw: Any, field: str = "init") -> dict[str, Any] | None:
    """``{"weights": str | None, "job": str | None}`` or None; the weights path is required by the library."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(field, f"must be an object such as {{\"weights\": \"grown.safetensors\"}}, got {raw!r}")
    unknown = sorted(set(raw) - set(INIT_FIELDS))
    if unknown:
        raise SpecError(f"{field}.{unknown[0]}", f"unknown field; valid fields: {', '.join(INIT_FIELDS)}")
    out: dict[str, Any] = {}
    for key in INIT_FIELDS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise SpecError(f"{field}.{key}", f"must be a non-empty string, got {value!r}")
        out[key] = value
    if out["weights"] is None:
        if out["job"] is not None:
            raise SpecError(f"{field}.job", "names a job of the netgrow service, which resolves it; outside the "
                                            "service give init.weights, the job's downloaded weights.safetensors")
        raise SpecError(field, "give init.weights (a netgrow .safetensors file) or, over HTTP, init.job")
    return out


def source_model(path: str, field: str = "init.weights") -> dict[str, Any]:
    """The model spec stored in a netgrow safetensors file's metadata."""
    from safetensors import SafetensorError, safe_open

    file = Path(path)
    if not file.is_file():
        raise SpecError(field, f"no file {path!r}; give the path of a netgrow weights file (.safetensors)")
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SpecError(field, f"{path!r} is not a readable safetensors file ({exc})") from exc
    if "model" not in metadata:
        raise SpecError(field, f"{path!r} has no netgrow model spec in its metadata; give a weights file that "
                               f"netgrow wrote (GET /v1/jobs/{{id}}/artifacts/weights)")
    try:
        spec = json.loads(metadata["model"])
    except json.JSONDecodeError as exc:
        raise SpecError(field, f"{path!r}: the model spec in its metadata is not JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise SpecError(field, f"{path!r}: the model spec in its metadata is not an object")
    return spec


def merge_model(stated: Mapping[str, Any] | None, source: Mapping[str, Any],
                field: str = "model") -> dict[str, Any]:
    """The source network's model spec; every field ``stated`` gives must equal the source's."""
    if stated is None:
        return dict(source)
    if not isinstance(stated, Mapping):
        raise SpecError(field, f"must be a JSON object, got {type(stated).__name__}")
    for key, value in stated.items():
        if key not in source:
            raise SpecError(f"{field}.{key}", f"the network in init has no field {key!r}; omit model (it is taken "
                                              f"from init)")
        if _normal(value) != _normal(source[key]):
            raise SpecError(f"{field}.{key}", f"is {json.dumps(value)} but the network in init has "
                                              f"{json.dumps(source[key])}; omit model, which is taken from init")
    return dict(source)


def check_data_fits(model: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int,
                    field: str = "data") -> None:
    """The job's data must give the images and classes the source network takes."""
    size = model.get("input_size")
    size = [size, size] if isinstance(size, int) else list(size) if size is not None else None
    takes = (int(model["in_channels"]), *(size or input_shape[1:]))
    gives = tuple(int(d) for d in input_shape)
    if takes != gives:
        raise SpecError(field, f"gives {'×'.join(map(str, gives))} images but the network in init takes "
                               f"{'×'.join(map(str, takes))}: choose data (or data.image_size) that match it")
    if int(model["num_classes"]) != num_classes:
        raise SpecError(field, f"has {num_classes} classes but the network in init classifies "
                               f"{model['num_classes']}: start from a network trained on the same classes")


def load_state(path: str, field: str = "init.weights") -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as exc:  # a file that changed since the spec was parsed
        raise SpecError(field, f"cannot read the weights in {path!r} ({exc})") from exc


def _normal(value: Any) -> Any:
    # JSON has no tuples: [8, 8] and (8, 8) state the same widths.
    return json.loads(json.dumps(value))
