"""What a user's dataset file holds, as far as a job spec and an upload need to know.

The npz and image-folder readers check a dataset completely and describe it
with a ``DatasetSummary``: the spec parser takes the model's input channels,
classes and image size from it, and the service shows it for an uploaded
dataset. One set of checks serves the library loader and the upload validator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

USER_FORMATS = ("npz", "image_folder")
"""Datasets a user brings as a file or folder (``data.path``)."""


@dataclass(frozen=True)
class DatasetSummary:
    """Shape, classes and sizes of a checked dataset.

    ``image_shape`` is (C, H, W) as stored, or None for an image folder whose
    images differ in size (a job then sets ``data.image_size``).
    ``test_samples`` is 0 when the dataset has no test split of its own (the
    loader then carves one out with ``data.test_fraction``).
    """

    format: str
    channels: int
    image_shape: tuple[int, int, int] | None
    num_classes: int
    class_names: tuple[str, ...]
    train_samples: int
    test_samples: int
    pixel_dtype: str  # "uint8" or a float dtype for npz; "uint8" for decoded images

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["image_shape"] = list(self.image_shape) if self.image_shape is not None else None
        out["class_names"] = list(self.class_names)
        return out
