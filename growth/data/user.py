"""Datasets a user brings (``data: {"name": "npz" | "image_folder", "path": …}``): describe and read them.

The spec parser needs a user dataset's channels, classes and image size
before anything is trained (the model is built for them); ``describe`` reads
only what that takes (npz headers and labels, image headers). ``read`` gives
the loader the decoded dataset. Both run the same checks as an upload.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from growth.data.image_folder import inspect_image_folder, read_image_folder
from growth.data.npz import inspect_npz, read_npz
from growth.data.raw import RawDataset
from growth.data.summary import USER_FORMATS, DatasetSummary
from growth.errors import DataError

PATH_FIELD = "data.path"


def describe(data: Mapping[str, Any], field: str = "data") -> DatasetSummary:
    """What a validated user data spec yields, from headers and labels only."""
    name, path = data["name"], data["path"]
    if name == "npz":
        return inspect_npz(path, full=False, field=f"{field}.path")
    if name == "image_folder":
        summary = inspect_image_folder(path, image_size=data.get("image_size"), decode=False, field=f"{field}.path")
        if summary.image_shape is None:
            raise DataError(f"{field}.image_size", f"the images in {path!r} differ in size: set image_size to "
                                                   f"resize them all to one square size, e.g. 32")
        return summary
    raise ValueError(f"{name!r} is not a user dataset format ({', '.join(USER_FORMATS)})")  # a caller's bug


def read(data: Mapping[str, Any]) -> RawDataset:
    """The dataset a validated user data spec names, decoded (images resized for image folders)."""
    if data["name"] == "npz":
        return read_npz(data["path"], field=PATH_FIELD)
    return read_image_folder(data["path"], data.get("image_size"), field=PATH_FIELD)
