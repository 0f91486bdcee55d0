"""Datasets as tensors: loading, seeded splits, device-side batching and augmentation.

``load_dataset(data_spec, seed)`` reads one of ``DATASET_NAMES`` and returns
``Splits`` (normalised float32 N×C×H×W images, int64 labels) for train,
validation (held out of the training data, for growth decisions) and test.
Training then slices ``batches`` from tensors already on the device and
``augment``s them there.
"""
from growth.data.augmentation import augment, default_pad
from growth.data.batching import batches
from growth.data.loader import load_dataset
from growth.data.spec import DATASET_NAMES, validate_data_spec
from growth.data.splits import Splits, stratified_split

__all__ = [
    "DATASET_NAMES",
    "Splits",
    "augment",
    "batches",
    "default_pad",
    "load_dataset",
    "stratified_split",
    "validate_data_spec",
]
