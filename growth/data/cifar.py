"""CIFAR-10 and CIFAR-100 from the official "python version" pickle folders.

Layouts (as extracted from cifar-10-python.tar.gz / cifar-100-python.tar.gz):

    cifar-10-batches-py/  data_batch_1 … data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each batch is a pickled dict with ``b"data"`` (uint8, N×3072: the red, green
and blue 32×32 planes row by row) and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` (CIFAR-100). The pickles are untrusted input and go through
``restricted_load`` only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growth.data.raw import RawDataset
from growth.data.safe_pickle import restricted_load
from growth.errors import DataError

ROOT_FIELD = "data.root"
CIFAR_CHANNELS, CIFAR_SIDE = 3, 32
CIFAR_ROW_LENGTH = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str  # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarLayout(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
)

CIFAR100 = CifarLayout(
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
)


def read_cifar10(root: str | Path) -> RawDataset:
    return read_cifar(root, CIFAR10)


def read_cifar100(root: str | Path) -> RawDataset:
    return read_cifar(root, CIFAR100)


def read_cifar(root: str | Path, layout: CifarLayout) -> RawDataset:
    """Read a CIFAR folder; ``root`` is the extracted folder or its parent."""
    folder = _locate(Path(root), layout)
    train = [_read_batch(folder / name, layout) for name in layout.train_files]
    test_images, test_labels = _read_batch(folder / layout.test_file, layout)
    return RawDataset(
        train_images=torch.from_numpy(np.concatenate([images for images, _ in train])),
        train_labels=torch.from_numpy(np.concatenate([labels for _, labels in train])),
        test_images=torch.from_numpy(np.ascontiguousarray(test_images).copy()),
        test_labels=torch.from_numpy(test_labels),
        num_classes=layout.num_classes,
        scale=1.0 / 255.0,
        class_names=_read_class_names(folder / layout.meta_file, layout),
    )


def _locate(root: Path, layout: CifarLayout) -> Path:
    marker = layout.train_files[0]
    if not root.is_dir():
        raise DataError(ROOT_FIELD, f"{root} is not a folder; expected the extracted {layout.folder}/ or its parent")
    for candidate in (root, root / layout.folder):
        if (candidate / marker).is_file():
            return candidate
    raise DataError(
        ROOT_FIELD,
        f"no {layout.title} files in {root}: expected {root / layout.folder / marker} "
        f"(extract the python version of {layout.title} there) or {root / marker}",
    )


def _load_dict(path: Path, layout: CifarLayout) -> dict[Any, Any]:
    if not path.is_file():
        raise DataError(ROOT_FIELD, f"missing {layout.title} file {path}")
    try:
        with path.open("rb") as file:
            content = restricted_load(file)
    except Exception as err:  # any failure to parse untrusted bytes is a bad file
        raise DataError(ROOT_FIELD, f"{path} is not a readable {layout.title} pickle: {err}") from err
    if not isinstance(content, dict):
        raise DataError(ROOT_FIELD, f"{path} should hold a dict, found {type(content).__name__}")
    return content


def _entry(content: dict[Any, Any], key: str, path: Path) -> Any:
    # The published files are Python 2 pickles, read with bytes keys; accept
    # str keys too for copies re-pickled under Python 3.
    for candidate in (key.encode(), key):
        if candidate in content:
            return content[candidate]
    raise DataError(ROOT_FIELD, f"{path} has no {key!r} entry")


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    content = _load_dict(path, layout)
    data = _entry(content, "data", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR_ROW_LENGTH):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(ROOT_FIELD, f"{path}: 'data' should be a uint8 array N×{CIFAR_ROW_LENGTH}, "
                                    f"found {dtype} {shape}")
    labels = _labels(_entry(content, layout.label_key, path), len(data), layout.num_classes, path)
    return data.reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE), labels


def _labels(raw: Any, expected: int, num_classes: int, path: Path) -> np.ndarray:
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise DataError(ROOT_FIELD, f"{path}: labels should be a list of integers, found {type(raw).__name__}")
    array = np.asarray(raw)
    if array.ndim != 1 or array.shape[0] != expected or (array.size and array.dtype.kind not in "iu"):
        raise DataError(ROOT_FIELD, f"{path}: expected {expected} integer labels, found {array.dtype} {array.shape}")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(ROOT_FIELD, f"{path}: labels must lie in 0..{num_classes - 1}, "
                                    f"found {labels.min()}..{labels.max()}")
    return labels


def _read_class_names(path: Path, layout: CifarLayout) -> tuple[str, ...] | None:
    # The names only label reports; training does not need them.
    if not path.is_file():
        return None
    names = _entry(_load_dict(path, layout), layout.names_key, path)
    if not (isinstance(names, Sequence) and not isinstance(names, (str, bytes))
            and len(names) == layout.num_classes
            and all(isinstance(name, (bytes, str)) for name in names)):
        raise DataError(ROOT_FIELD, f"{path}: {layout.names_key!r} should list {layout.num_classes} names")
    return tuple(name.decode("utf-8", "replace") if isinstance(name, bytes) else name for name in names)
