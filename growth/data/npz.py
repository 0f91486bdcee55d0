"""A user's dataset as a NumPy ``.npz`` file: ``x``, ``y`` and optionally ``x_test``, ``y_test``, ``classes``.

    x        N×H×W or N×H×W×C images, uint8 (0..255) or float (0..1)
    y        N integer labels 0..K-1
    x_test   M×… images of the same H, W, C (optional, with y_test)
    y_test   M integer labels
    classes  K class names (optional; a string array): K = len(classes), else max(y) + 1

Written by ``np.savez(path, x=x, y=y)`` or ``np.savez_compressed``. The file is
untrusted input: it is read with ``allow_pickle=False`` member by member, and
every array's size is known from its header (and bounded by ``max_bytes``)
before a byte of it is decompressed, so a small file cannot expand into an
unbounded one.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from growth.data.raw import RawDataset
from growth.data.summary import DatasetSummary
from growth.errors import DataError, DatasetTooLarge

PATH_FIELD = "data.path"
REQUIRED_KEYS = ("x", "y")
OPTIONAL_KEYS = ("x_test", "y_test", "classes")
MAX_CHANNELS = 4
SAVE_HINT = "save it with np.savez(path, x=images, y=labels)"


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def inspect_npz(path: str | Path, *, max_bytes: int | None = None, field: str = PATH_FIELD,
                full: bool = True) -> DatasetSummary:
    """Check an npz dataset and describe it; raises ``DataError`` on ``field``.

    ``full`` reads every array (an upload's complete check: pixels too);
    otherwise only the headers and the labels are read, which is what a job
    spec needs to know (channels, size, classes) and costs little.
    """
    return _read(Path(path), max_bytes, field, read_pixels=full)[1]


def read_npz(path: str | Path, *, max_bytes: int | None = None, field: str = PATH_FIELD) -> RawDataset:
    """The checked dataset as tensors (N×C×H×W images, int64 labels) for ``load_dataset``."""
    raw = _read(Path(path), max_bytes, field, read_pixels=True)[0]
    assert raw is not None
    return raw


def _read(path: Path, max_bytes: int | None, field: str,
          read_pixels: bool) -> tuple[RawDataset | None, DatasetSummary]:
    where = path.name
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise DataError(field, f"no file {str(path)!r}; give the path of an .npz file") from exc
    except IsADirectoryError as exc:
        raise DataError(field, f"{str(path)!r} is a folder; give the path of an .npz file") from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(field, f"{where} is not a readable .npz file (truncated or corrupt: {exc}); "
                               f"{SAVE_HINT}") from exc
    with archive:
        members = _members(archive, where, field)
        headers = {key: _header(archive, info, where, field) for key, info in members.items()}
        _check_headers(headers, where, field, max_bytes)
        wanted = [key for key in members if read_pixels or key not in ("x", "x_test")]
        arrays = {key: _array(archive, members[key], where, field) for key in wanted}

    y, y_test = arrays["y"], arrays.get("y_test")
    class_names = _class_names(arrays.get("classes"), where, field)
    num_classes = len(class_names) if class_names is not None else int(y.max()) + 1 if y.size else 0
    _check_labels(y, "y", num_classes, where, field, explicit=class_names is not None)
    if y_test is not None:
        _check_labels(y_test, "y_test", num_classes, where, field, explicit=class_names is not None)
    present = np.unique(y)
    if present.size < 2:
        only = f"only class {int(present[0])}" if present.size else "no labels"
        raise DataError(field, f"{where}: y holds {only}; a classifier needs samples of at least two classes")
    if class_names is None:
        class_names = tuple(str(label) for label in range(num_classes))
    x_header = headers["x"]
    channels, height, width = _chw(x_header.shape)
    summary = DatasetSummary(
        format="npz", channels=channels, image_shape=(channels, height, width), num_classes=num_classes,
        class_names=class_names, train_samples=int(y.shape[0]),
        test_samples=int(y_test.shape[0]) if y_test is not None else 0, pixel_dtype=str(x_header.dtype),
    )
    if not read_pixels:
        return None, summary

    x, x_test = arrays["x"], arrays.get("x_test")
    _check_pixels(x, "x", where, field)
    if x_test is not None:
        _check_pixels(x_test, "x_test", where, field)
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    raw = RawDataset(
        train_images=_to_nchw(x),
        train_labels=torch.from_numpy(y.astype(np.int64)),
        test_images=_to_nchw(x_test) if x_test is not None else None,
        test_labels=torch.from_numpy(y_test.astype(np.int64)) if y_test is not None else None,
        num_classes=num_classes,
        scale=scale,
        class_names=class_names,
    )
    return raw, summary


def _members(archive: zipfile.ZipFile, where: str, field: str) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    valid = REQUIRED_KEYS + OPTIONAL_KEYS
    for info in archive.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key not in valid:
            raise DataError(field, f"{where} holds an array named {key!r}; an npz dataset holds only "
                                   f"{', '.join(valid)} (x and y required): {SAVE_HINT}")
        members[key] = info
    missing = [key for key in REQUIRED_KEYS if key not in members]
    if missing:
        found = ", ".join(sorted(members)) or "no arrays"
        raise DataError(field, f"{where} has no array {missing[0]!r} (found: {found}); {SAVE_HINT}")
    if ("x_test" in members) != ("y_test" in members):
        have, lack = ("x_test", "y_test") if "x_test" in members else ("y_test", "x_test")
        raise DataError(field, f"{where} has {have} but no {lack}: give both test arrays or neither")
    return members


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, field: str) -> ArrayHeader:
    key = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
        raise DataError(field, f"{where}: array {key!r} is not a readable .npy array ({exc}); {SAVE_HINT}") from exc
    if dtype.hasobject:
        raise DataError(field, f"{where}: array {key!r} holds Python objects (dtype {dtype}), which would need "
                               f"unpickling; save plain numeric arrays (and classes as a string array)")
    return ArrayHeader(tuple(int(d) for d in shape), dtype, bool(fortran))


def _check_headers(headers: dict[str, ArrayHeader], where: str, field: str, max_bytes: int | None) -> None:
    total = sum(header.nbytes for header in headers.values())
    if max_bytes is not None and total > max_bytes:
        raise DatasetTooLarge(field, f"{where}: its arrays hold {_size(total)} once decompressed; this server accepts at "
                               f"most {_size(max_bytes)}: use fewer or smaller images")
    x = headers["x"]
    _check_image_header(x, "x", where, field)
    _check_label_header(headers["y"], "y", x.shape[0], "x", where, field)
    if "x_test" in headers:
        test = headers["x_test"]
        _check_image_header(test, "x_test", where, field)
        if test.shape[1:] != x.shape[1:] and _chw(test.shape) != _chw(x.shape):
            raise DataError(field, f"{where}: x_test images are {_shape(test.shape[1:])} but x images are "
                                   f"{_shape(x.shape[1:])}; both must have the same size and channels")
        _check_label_header(headers["y_test"], "y_test", test.shape[0], "x_test", where, field)
    if "classes" in headers:
        classes = headers["classes"]
        if classes.dtype.kind not in "US" or len(classes.shape) != 1:
            raise DataError(field, f"{where}: classes must be a 1-D array of class names (strings), got "
                                   f"{classes.dtype} of shape {classes.shape}: np.array(['cat', 'dog'])")


def _check_image_header(header: ArrayHeader, key: str, where: str, field: str) -> None:
    shape, dtype = header.shape, header.dtype
    if len(shape) not in (3, 4):
        raise DataError(field, f"{where}: {key} has shape {shape}; it must be N×H×W (grey) or N×H×W×C images")
    if len(shape) == 4 and not 1 <= shape[3] <= MAX_CHANNELS:
        hint = (f"; it looks like N×C×H×W: store N×H×W×C with {key}.transpose(0, 2, 3, 1)"
                if 1 <= shape[1] <= MAX_CHANNELS else "")
        raise DataError(field, f"{where}: {key} has shape {shape}, i.e. {shape[3]} channels; images have "
                               f"1 to {MAX_CHANNELS} channels, last{hint}")
    if min(shape) == 0:
        raise DataError(field, f"{where}: {key} has shape {shape}; it holds no images (or empty ones)")
    if not (dtype == np.uint8 or dtype.kind == "f"):
        raise DataError(field, f"{where}: {key} has dtype {dtype}; images must be uint8 (0..255) or float "
                               f"(0..1): convert with {key}.astype(np.uint8) or ({key} / 255).astype(np.float32)")


def _check_label_header(header: ArrayHeader, key: str, count: int, images: str, where: str, field: str) -> None:
    if header.dtype.kind not in "iu":
        raise DataError(field, f"{where}: {key} has dtype {header.dtype}; labels must be integers 0..K-1: "
                               f"convert with {key}.astype(np.int64)")
    if len(header.shape) != 1:
        raise DataError(field, f"{where}: {key} has shape {header.shape}; labels must be a 1-D array "
                               f"(one label per image): use {key}.reshape(-1)")
    if header.shape[0] != count:
        raise DataError(field, f"{where}: {images} holds {count} images but {key} holds {header.shape[0]} labels; "
                               f"give one label per image")


def _array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, field: str) -> np.ndarray:
    key = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
        raise DataError(field, f"{where}: array {key!r} cannot be read (truncated or corrupt: {exc}); "
                               f"{SAVE_HINT}") from exc


def _class_names(classes: np.ndarray | None, where: str, field: str) -> tuple[str, ...] | None:
    if classes is None:
        return None
    names = tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in classes.tolist())
    if len(names) < 2:
        raise DataError(field, f"{where}: classes names {len(names)} class; a classifier needs at least two")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DataError(field, f"{where}: classes names {duplicate!r} twice; give each class one unique name")
    return names


def _check_labels(labels: np.ndarray, key: str, num_classes: int, where: str, field: str, explicit: bool) -> None:
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(field, f"{where}: {key} holds the label {low}; labels must lie in 0..K-1")
    if high >= num_classes:
        source = f"classes names {num_classes}" if explicit else f"y's largest label is {num_classes - 1}"
        raise DataError(field, f"{where}: {key} holds the label {high} but {source}; labels must lie in "
                               f"0..{num_classes - 1}" + (" (add its name to classes)" if explicit else ""))


def _check_pixels(images: np.ndarray, key: str, where: str, field: str) -> None:
    if images.dtype == np.uint8:
        return
    # Floats are read as 0..1; 0..255 floats would train on a different scale than uint8 of the same picture.
    low, high = float(images.min()), float(images.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(field, f"{where}: {key} holds NaN or infinite values; images must be finite")
    if low < 0.0 or high > 1.0:
        raise DataError(field, f"{where}: {key} holds float values in [{low:g}, {high:g}]; float images must lie "
                               f"in [0, 1]: divide by 255, or store uint8 pixels")


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1, shape[1], shape[2]) if len(shape) == 3 else (shape[3], shape[1], shape[2])


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    array = images[:, np.newaxis] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    # torch has no float16 → float32 path in the loader's to(); keep uint8 and float32/64 as stored.
    return torch.from_numpy(np.ascontiguousarray(array))


def _shape(dims: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in dims)


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"
