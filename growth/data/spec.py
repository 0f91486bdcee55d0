"""The ``data`` section of a job spec: field checks and defaults.

``validate_data_spec`` is the only place that knows which fields a data spec
has; the loader trusts its output. Errors name the dotted field
(``data.val_fraction``) and the valid range, so the CLI and the HTTP service
can show them as they are.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from growth import validation as check
from growth.data.summary import USER_FORMATS
from growth.errors import SpecError

BUILTIN_DATASETS = ("digits", "synthetic")
"""Datasets generated in memory; they have no test split of their own."""

ON_DISK_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist")
"""Datasets read from ``data.root``; they ship their own test split."""

FOUND_WITHOUT_ROOT = ("mnist", "fashion_mnist")
"""On-disk datasets that may leave out ``data.root``: the reader looks in well-known folders
(``growth.data.mnist.default_folders``: ``$NETGROW_DATA_DIR/<name>``, then ``/usr/share/datasets/<name>``)."""

DATASET_NAMES = BUILTIN_DATASETS + ON_DISK_DATASETS + USER_FORMATS

STANDARD_SAMPLES: dict[str, tuple[int, int]] = {
    "digits": (1797, 0),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "mnist": (60_000, 10_000),
    "fashion_mnist": (60_000, 10_000),
}
"""(training, test) sample counts of each fixed dataset as published; 0 means no test split of its own."""

COMMON_DEFAULTS: dict[str, Any] = {
    "name": "digits",
    "root": None,
    "image_size": None,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "augment": False,
    "limit": None,
}

# Defaults give a 10-class RGB task that a two-layer conv net learns in a few
# epochs on a CPU: smooth templates are far apart relative to the noise once
# averaged over the 16×16 pixels.
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_classes": 10,
    "channels": 3,
    "size": 16,
    "samples": 1000,
    "noise": 1.0,
}


def data_json_schema() -> dict[str, Any]:
    """JSON schema of a data spec: a built-in dataset, the synthetic one, or one read from ``root``.

    It states what ``validate_data_spec`` checks field by field; that
    ``samples`` covers every class is left to the validator.
    """
    optional_count = {"type": ["integer", "null"], "minimum": 1}
    common: dict[str, Any] = {
        "image_size": {**optional_count, "description": "resize images to this square size"},
        "val_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                         "description": "share of the training data held out for growth decisions"},
        "test_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                          "description": "share held out as the test split (datasets without their own)"},
        "augment": {"type": "boolean", "description": "random crop and flip, on the device"},
        "limit": {**optional_count, "description": "use only this many training samples"},
    }
    root = {"type": "string", "minLength": 1, "description": "the folder holding the dataset files"}
    searched_root = {**root, "description": "the folder holding the four IDX files; left out, they are looked for "
                                            "in $NETGROW_DATA_DIR/mnist (or fashion-mnist), then "
                                            "/usr/share/datasets/mnist (or fashion-mnist)"}
    path = {"type": "string", "minLength": 1,
            "description": "npz: the .npz file (x, y, optional x_test, y_test, classes); image_folder: the folder "
                           "with one sub-folder of PNG/JPEG images per class (optionally under train/ and test/)"}

    def variant(title: str, names: dict[str, Any], extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"title": title, "type": "object", "additionalProperties": False, "required": required,
                "properties": {"name": names, **common, **extra}}

    synthetic = {
        "num_classes": {"type": "integer", "minimum": 2},
        "channels": {"type": "integer", "minimum": 1},
        "size": {"type": "integer", "minimum": 2},
        "samples": {"type": "integer", "minimum": 2, "description": "at least num_classes"},
        "noise": {"type": "number", "minimum": 0},
    }
    in_memory = [name for name in BUILTIN_DATASETS if name != "synthetic"]
    return {"title": "DataSpec", "oneOf": [
        variant("BuiltinData", {"enum": in_memory}, {"root": {"anyOf": [root, {"type": "null"}]}}, []),
        variant("SyntheticData", {"const": "synthetic"}, {"root": {"anyOf": [root, {"type": "null"}]},
                                                          **synthetic}, ["name"]),
        variant("DatasetFolder", {"enum": [name for name in ON_DISK_DATASETS if name not in FOUND_WITHOUT_ROOT]},
                {"root": root}, ["name", "root"]),
        variant("IdxDataset", {"enum": list(FOUND_WITHOUT_ROOT)},
                {"root": {"anyOf": [searched_root, {"type": "null"}]}}, ["name"]),
        variant("UserData", {"enum": list(USER_FORMATS)}, {"path": path}, ["name", "path"]),
    ]}


def validate_data_spec(spec: Mapping[str, Any] | None, field: str = "data") -> dict[str, Any]:
    """Check a data spec and return a new dict with every default filled in.

    Synthetic-only fields are kept (and filled) for ``name == "synthetic"`` and
    refused for the other datasets, so a typo'd or misplaced field never passes
    silently. The result validates to itself.
    """
    spec = check.mapping({} if spec is None else spec, field)

    name = spec.get("name", COMMON_DEFAULTS["name"])
    if name not in DATASET_NAMES:
        raise SpecError(f"{field}.name", f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")

    allowed = set(COMMON_DEFAULTS) | (set(SYNTHETIC_DEFAULTS) if name == "synthetic" else set())
    if name in USER_FORMATS:
        allowed = (allowed - {"root"}) | {"path"}
    for key in spec:
        if key not in allowed and key in SYNTHETIC_DEFAULTS:
            raise SpecError(f"{field}.{key}", f"only the synthetic dataset takes this field, not {name!r}")
        if key == "root" and name in USER_FORMATS:
            raise SpecError(f"{field}.root", f"{name} data are read from data.path (the file or folder itself)")
        if key == "path" and name not in USER_FORMATS:
            raise SpecError(f"{field}.path", f"only npz and image_folder data take a path; {name} "
                                             f"{'reads data.root' if name in ON_DISK_DATASETS else 'is built in'}")
    check.reject_unknown(spec, sorted(allowed), field)

    out: dict[str, Any] = {"name": name}
    if name in USER_FORMATS:
        out["path"] = _path(spec.get("path"), name, f"{field}.path")
    else:
        out["root"] = _root(spec.get("root"), name, f"{field}.root")
    out["image_size"] = _optional_int(spec.get("image_size"), f"{field}.image_size", minimum=1)
    out["val_fraction"] = _fraction(
        spec.get("val_fraction", COMMON_DEFAULTS["val_fraction"]), f"{field}.val_fraction", allow_zero=True
    )
    # A dataset without a test split needs a non-empty one carved out of it.
    out["test_fraction"] = _fraction(
        spec.get("test_fraction", COMMON_DEFAULTS["test_fraction"]), f"{field}.test_fraction", allow_zero=False
    )
    out["augment"] = check.boolean(spec.get("augment", COMMON_DEFAULTS["augment"]), f"{field}.augment")
    out["limit"] = _optional_int(spec.get("limit"), f"{field}.limit", minimum=1)

    if name == "synthetic":
        def synthetic(key: str, minimum: int) -> int:
            return check.integer(spec.get(key, SYNTHETIC_DEFAULTS[key]), f"{field}.{key}", minimum=minimum)

        out["num_classes"] = synthetic("num_classes", 2)
        out["channels"] = synthetic("channels", 1)
        out["size"] = synthetic("size", 2)
        out["samples"] = synthetic("samples", out["num_classes"])
        out["noise"] = _non_negative_float(spec.get("noise", SYNTHETIC_DEFAULTS["noise"]), f"{field}.noise")
    return out


def _root(value: Any, name: str, field: str) -> str | None:
    if value is None:
        if name in ON_DISK_DATASETS and name not in FOUND_WITHOUT_ROOT:
            raise SpecError(field, f"{name} is read from disk: set it to the folder holding the dataset files")
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise SpecError(field, f"must be a folder path (string), got {value!r}")
    return os.fspath(value)


def _path(value: Any, name: str, field: str) -> str:
    if value is None:
        what = "the .npz file" if name == "npz" else "the folder with one sub-folder of images per class"
        raise SpecError(field, f"{name} data need a path: {what}")
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise SpecError(field, f"must be a file or folder path (string), got {value!r}")
    return os.fspath(value)


def _optional_int(value: Any, field: str, minimum: int) -> int | None:
    return None if value is None else check.integer(value, field, minimum=minimum)


def _fraction(value: Any, field: str, allow_zero: bool) -> float:
    return check.in_range(check.number(value, field), field, 0.0, 1.0, lo_open=not allow_zero, hi_open=True)


def _non_negative_float(value: Any, field: str) -> float:
    return check.in_range(check.number(value, field), field, 0.0)
