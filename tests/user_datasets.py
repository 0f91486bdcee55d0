"""Real datasets in the formats a user brings (npz, image folders, archives of them), for tests.

The images are scikit-learn's 1,797 handwritten digits (8×8, 0..16 ink),
scaled to 8-bit pixels, so that a network trained on them learns something.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """(N×8×8 uint8 images, N int64 labels) of the real digits, 0..16 stretched to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def write_digits_npz(path: Path, *, with_test: bool = True, classes: bool = True, compressed: bool = True,
                     limit: int | None = None) -> dict[str, np.ndarray]:
    """The digits as an npz dataset: the last 360 images are its test split (when ``with_test``)."""
    images, labels = digits_uint8()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    arrays: dict[str, np.ndarray] = {}
    if with_test:
        cut = len(labels) - min(360, len(labels) // 5)
        arrays.update(x=images[:cut], y=labels[:cut], x_test=images[cut:], y_test=labels[cut:])
    else:
        arrays.update(x=images, y=labels)
    if classes:
        arrays["classes"] = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


def write_png(path: Path, pixels: np.ndarray, format: str = "PNG") -> None:
    """H×W (grey) or H×W×3 (RGB) uint8 pixels as an image file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=format)


def write_digits_folder(root: Path, *, per_class: int = 6, classes: tuple[int, ...] = (0, 1, 2),
                        split: bool = False) -> dict[str, list[np.ndarray]]:
    """PNG files of real digits, one folder per class named ``digit-<d>``; with ``split`` under train/ and test/.

    Returns the pixels written per relative folder (``digit-0`` or ``train/digit-0``), in file-name order.
    """
    images, labels = digits_uint8()
    written: dict[str, list[np.ndarray]] = {}
    for digit in classes:
        chosen = images[labels == digit][:per_class]
        parts = [("train", chosen[: per_class - 2]), ("test", chosen[per_class - 2:])] if split else [("", chosen)]
        for part, group in parts:
            folder = f"{part}/digit-{digit}" if part else f"digit-{digit}"
            written[folder] = []
            for i, pixels in enumerate(group):
                write_png(root / folder / f"{i:03d}.png", pixels)
                written[folder].append(pixels)
    return written


def zip_folder(folder: Path, destination: Path) -> Path:
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*")):
            bundle.write(path, path.relative_to(folder).as_posix())
    return destination


def tar_folder(folder: Path, destination: Path, mode: str = "w") -> Path:
    with tarfile.open(destination, mode) as bundle:
        for path in sorted(folder.rglob("*")):
            bundle.add(path, path.relative_to(folder).as_posix(), recursive=False)
    return destination


def tar_with(destination: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar archive of hand-made members (links, devices, hostile names)."""
    with tarfile.open(destination, "w") as bundle:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                bundle.addfile(info, io.BytesIO(payload))
            else:
                bundle.addfile(info)
    return destination
