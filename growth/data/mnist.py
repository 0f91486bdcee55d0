"""MNIST and Fashion-MNIST from their IDX files, plain or gzipped.

IDX: two zero bytes, a type byte (0x08 = unsigned byte), the number of
dimensions, each dimension as a big-endian uint32, then the values row-major.
Images are ``…-images-idx3-ubyte`` (magic 0x00000803, N×28×28), labels
``…-labels-idx1-ubyte`` (magic 0x00000801, N).

Without ``data.root`` the files are looked for where an operator or a
package puts them (``default_folders``): ``$NETGROW_DATA_DIR/<home>``, the
service's dataset directory, then ``/usr/share/datasets/<home>``, where
Debian's ``dataset-fashion-mnist`` installs Fashion-MNIST.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from growth.data.raw import RawDataset
from growth.errors import DataError

ROOT_FIELD = "data.root"
IDX_UBYTE = 0x08
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10

FASHION_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True)
class IdxLayout:
    title: str
    folders: tuple[str, ...]  # sub-folders root may hold the files in (torchvision uses <Name>/raw)
    class_names: tuple[str, ...]
    home: str  # the folder's name under NETGROW_DATA_DIR and SYSTEM_DATASETS
    package: str | None = None  # the Debian package that installs the files in SYSTEM_DATASETS / home


MNIST = IdxLayout("MNIST", ("MNIST", "mnist"), tuple(str(digit) for digit in range(10)), home="mnist")
FASHION_MNIST = IdxLayout("Fashion-MNIST", ("FashionMNIST", "fashion_mnist", "fashion-mnist"), FASHION_CLASS_NAMES,
                          home="fashion-mnist", package="dataset-fashion-mnist")
LAYOUTS = {"mnist": MNIST, "fashion_mnist": FASHION_MNIST}
"""The IDX layout of each dataset name a data spec may give."""

DATA_DIR_VARIABLE = "NETGROW_DATA_DIR"
"""The service's dataset directory (``worker.store.settings.Settings.data_dir``), searched first without a root."""
SYSTEM_DATASETS = Path("/usr/share/datasets")
"""Where Debian's ``dataset-*`` packages install their files."""

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def read_mnist(root: str | Path | None) -> RawDataset:
    return read_idx_dataset(root, MNIST)


def read_fashion_mnist(root: str | Path | None) -> RawDataset:
    return read_idx_dataset(root, FASHION_MNIST)


def read_idx_dataset(root: str | Path | None, layout: IdxLayout) -> RawDataset:
    """Read the four IDX files; ``root`` is their folder or a parent of it, ``None`` to look in ``default_folders``."""
    folder = _locate(Path(root) if root is not None else find_default_root(layout), layout)
    train_images, train_labels = _read_pair(folder, TRAIN_IMAGES, TRAIN_LABELS)
    test_images, test_labels = _read_pair(folder, TEST_IMAGES, TEST_LABELS)
    return RawDataset(
        train_images=torch.from_numpy(train_images),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(test_images),
        test_labels=torch.from_numpy(test_labels),
        num_classes=NUM_CLASSES,
        scale=1.0 / 255.0,
        class_names=layout.class_names,
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in one IDX file (gzipped if its name ends in .gz)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(ROOT_FIELD, f"cannot read {path}: {err}") from err
    if len(raw) < 4:
        raise DataError(ROOT_FIELD, f"{path} is too short to be an IDX file")
    found_magic = struct.unpack(">I", raw[:4])[0]
    if found_magic != magic:
        raise DataError(ROOT_FIELD, f"{path}: IDX magic number {found_magic:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(ROOT_FIELD, f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(ROOT_FIELD, f"{path}: header says {shape} = {expected} bytes of data, "
                                    f"file holds {len(raw) - header}")
    # Copy out of the immutable bytes so torch gets a writable array.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def default_folders(layout: IdxLayout, data_dir: str | Path | None = None) -> list[Path]:
    """Where a data spec without ``root`` looks for ``layout``'s files, in order.

    ``data_dir`` is the service's dataset directory; by default the
    ``NETGROW_DATA_DIR`` variable, skipped when unset.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_VARIABLE) or None
    first = [Path(data_dir) / layout.home] if data_dir is not None else []
    return first + [SYSTEM_DATASETS / layout.home]


def find_default_root(layout: IdxLayout, data_dir: str | Path | None = None) -> Path:
    """The first of ``default_folders`` that holds the training images; ``DataError`` saying how to get them if none."""
    searched = default_folders(layout, data_dir)
    for folder in searched:
        if _holding_folder(folder, layout) is not None:
            return folder
    files = ", ".join(FILE_NAMES)
    put = f"put the four files ({files}, each plain or .gz) in {searched[0]}"
    fix = (f"`apt-get install -y {layout.package}` installs them in {SYSTEM_DATASETS / layout.home}; or {put}"
           if layout.package is not None else put)
    unset = "" if len(searched) > 1 else f" ({DATA_DIR_VARIABLE} is not set)"
    raise DataError(ROOT_FIELD, f"is not set and no {layout.title} files were found in "
                                f"{', '.join(str(folder) for folder in searched)}{unset}: {fix}; "
                                "or set data.root to the folder holding them")


def _locate(root: Path, layout: IdxLayout) -> Path:
    if not root.is_dir():
        raise DataError(ROOT_FIELD, f"{root} is not a folder; expected the folder holding the {layout.title} IDX files")
    folder = _holding_folder(root, layout)
    if folder is not None:
        return folder
    raise DataError(
        ROOT_FIELD,
        f"no {layout.title} files in {root}: expected {root / TRAIN_IMAGES} (or .gz) with "
        f"{TRAIN_LABELS}, {TEST_IMAGES}, {TEST_LABELS}, directly or under {layout.folders[0]}/raw/",
    )


def _holding_folder(root: Path, layout: IdxLayout) -> Path | None:
    """``root`` or the sub-folder of it that holds the training images, if any."""
    candidates = [root] + [root / sub for sub in layout.folders] + [root / sub / "raw" for sub in layout.folders]
    for candidate in candidates:
        if _find(candidate, TRAIN_IMAGES) is not None:
            return candidate
    return None


def _find(folder: Path, name: str) -> Path | None:
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _require(folder: Path, name: str) -> Path:
    path = _find(folder, name)
    if path is None:
        raise DataError(ROOT_FIELD, f"missing {folder / name} (or {name}.gz)")
    return path


def _read_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _require(folder, images_name), _require(folder, labels_name)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(ROOT_FIELD, f"{images_path} holds {len(images)} images but {labels_path} "
                                    f"{len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(ROOT_FIELD, f"{labels_path}: labels must lie in 0..{NUM_CLASSES - 1}, found {labels.max()}")
    return images[:, np.newaxis], labels.astype(np.int64)
