"""A user's dataset as a folder of images: one sub-folder per class, PNG or JPEG files.

    root/cat/001.png  root/dog/002.jpg  …                      (the loader carves out a test split)
    root/train/cat/…  root/train/dog/…  root/test/cat/…  …      (a test split of its own)

Class names are the sub-folder names, sorted; label i is the i-th name.
Images are decoded with Pillow, converted to grey (when every image is grey)
or RGB, and resized to ``image_size`` (bilinear, antialiased when shrinking);
without ``image_size`` all images must have one size. Hidden files and folders
(``.DS_Store``, ``__MACOSX``) are skipped; any other file in a class folder must
be a PNG or JPEG.

Pillow is imported only when a folder is read: ``growth`` imports with torch alone.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growth.data.raw import RawDataset
from growth.data.summary import DatasetSummary
from growth.errors import DataError

PATH_FIELD = "data.path"
IMAGE_SIZE_FIELD = "data.image_size"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = ("train", "test")
# Modes Pillow converts to 8-bit grey or RGB without losing the picture's meaning.
GREY_MODES = ("1", "L", "LA")
COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
DEFAULT_MAX_PIXELS = 4096 * 4096
LAYOUT_HINT = ("an image folder holds one sub-folder of PNG/JPEG files per class (root/cat/1.png), "
               "or train/ and test/ folders laid out that way")


@dataclass(frozen=True)
class ImageFile:
    path: Path
    label: int
    mode: str
    size: tuple[int, int]  # (width, height), as Pillow reports it


@dataclass(frozen=True)
class FolderScan:
    """Every image of a folder with its label, mode and size (headers only, nothing decoded)."""

    class_names: tuple[str, ...]
    train: list[ImageFile]
    test: list[ImageFile]
    channels: int


def inspect_image_folder(root: str | Path, *, image_size: int | None = None, decode: bool = True,
                         max_pixels: int = DEFAULT_MAX_PIXELS, field: str = PATH_FIELD) -> DatasetSummary:
    """Check an image folder and describe it; ``decode`` also decodes every image (an upload's full check).

    Without ``image_size`` the folder may hold images of different sizes; its
    ``image_shape`` is then None and a job must set ``data.image_size``.
    """
    scan = scan_image_folder(root, max_pixels=max_pixels, field=field)
    if decode:
        for image in (*scan.train, *scan.test):
            _decode(image, scan.channels, None, field)
    sizes = {image.size for image in (*scan.train, *scan.test)}
    if image_size is not None:
        shape: tuple[int, int, int] | None = (scan.channels, image_size, image_size)
    elif len(sizes) == 1:
        width, height = sizes.pop()
        shape = (scan.channels, height, width)
    else:
        shape = None
    return DatasetSummary(
        format="image_folder", channels=scan.channels, image_shape=shape, num_classes=len(scan.class_names),
        class_names=scan.class_names, train_samples=len(scan.train), test_samples=len(scan.test),
        pixel_dtype="uint8",
    )


def read_image_folder(root: str | Path, image_size: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      field: str = PATH_FIELD) -> RawDataset:
    """Decode every image into uint8 N×C×H×W tensors (``scale`` 1/255) for ``load_dataset``."""
    scan = scan_image_folder(root, max_pixels=max_pixels, field=field)
    if image_size is None:
        common_size(scan, field=IMAGE_SIZE_FIELD)

    def stack(images: list[ImageFile]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = np.stack([_decode(image, scan.channels, image_size, field) for image in images])
        labels = np.fromiter((image.label for image in images), dtype=np.int64, count=len(images))
        return torch.from_numpy(pixels), torch.from_numpy(labels)

    train_x, train_y = stack(scan.train)
    test_x, test_y = stack(scan.test) if scan.test else (None, None)
    return RawDataset(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                      num_classes=len(scan.class_names), scale=1.0 / 255.0, class_names=scan.class_names)


def common_size(scan: FolderScan, *, field: str = IMAGE_SIZE_FIELD) -> tuple[int, int]:
    """(width, height) shared by every image; ``DataError`` naming two that differ otherwise."""
    first = scan.train[0]
    for image in (*scan.train, *scan.test):
        if image.size != first.size:
            raise DataError(field, f"images differ in size ({_wh(first.size)} {_name(first)}, {_wh(image.size)} "
                                   f"{_name(image)}): set data.image_size to resize them all to one square size")
    return first.size


def scan_image_folder(root: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      field: str = PATH_FIELD) -> FolderScan:
    """Find the classes and every image file, reading only each image's header."""
    root = Path(root)
    if not root.is_dir():
        what = "a file" if root.exists() else "missing"
        raise DataError(field, f"{str(root)!r} is {what}; give the path of a folder: {LAYOUT_HINT}")
    folders = _visible_folders(root)
    names = {folder.name for folder in folders}
    if "train" in names and names <= set(SPLIT_FOLDERS):
        class_names = tuple(folder.name for folder in _class_folders(root / "train", field))
        labels = {name: i for i, name in enumerate(class_names)}
        train = list(_images(root / "train", labels, max_pixels, field))
        test: list[ImageFile] = []
        if (root / "test").is_dir():
            for folder in _class_folders(root / "test", field):
                if folder.name not in labels:
                    raise DataError(field, f"test/{folder.name} is a class that train/ does not have; test classes "
                                           f"must be train classes ({', '.join(class_names)})")
            test = list(_images(root / "test", labels, max_pixels, field))
    elif "test" in names and "train" not in names and names <= set(SPLIT_FOLDERS):
        raise DataError(field, f"{root.name} has a test/ folder but no train/ folder: {LAYOUT_HINT}")
    else:
        class_names = tuple(folder.name for folder in _class_folders(root, field))
        train = list(_images(root, {name: i for i, name in enumerate(class_names)}, max_pixels, field))
        test = []
    if len(class_names) < 2:
        raise DataError(field, f"{root.name} holds one class ({class_names[0]!r}); a classifier needs at least two "
                               f"class folders")
    modes = {image.mode for image in (*train, *test)}
    channels = 1 if modes <= set(GREY_MODES) else 3
    return FolderScan(class_names=class_names, train=train, test=test, channels=channels)


def _visible_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _hidden(p)), key=lambda p: p.name)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


def _class_folders(folder: Path, field: str) -> list[Path]:
    classes = _visible_folders(folder)
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES][:3]
        found = f" (it holds images directly: {', '.join(loose)})" if loose else ""
        raise DataError(field, f"{_relative(folder)} has no class folders{found}: {LAYOUT_HINT}")
    return classes


def _images(split: Path, labels: dict[str, int], max_pixels: int, field: str) -> Iterator[ImageFile]:
    from PIL import Image, UnidentifiedImageError

    for folder in _visible_folders(split):
        files = sorted(p for p in folder.iterdir() if not _hidden(p))
        count = 0
        for path in files:
            where = f"{_relative(path)}"
            if path.is_dir():
                raise DataError(field, f"{where} is a folder inside the class folder {folder.name!r}; class "
                                       f"folders hold image files only: {LAYOUT_HINT}")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(field, f"{where} is not a PNG or JPEG file (by its name); remove it or convert it")
            try:
                with Image.open(path) as image:
                    mode, size, kind = image.mode, image.size, image.format
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
                raise DataError(field, f"{where} is not a readable image ({exc}); re-save it as PNG or JPEG") from exc
            if kind not in ("PNG", "JPEG"):
                raise DataError(field, f"{where} is a {kind} image, not PNG or JPEG; re-save it as PNG or JPEG")
            if mode not in GREY_MODES + COLOUR_MODES:
                raise DataError(field, f"{where} has Pillow mode {mode!r} (e.g. 16-bit); save 8-bit grey or RGB "
                                       f"images")
            if size[0] * size[1] > max_pixels:
                raise DataError(field, f"{where} is {_wh(size)} pixels, more than the {max_pixels:,} an image may "
                                       f"have here; shrink it")
            count += 1
            yield ImageFile(path=path, label=labels[folder.name], mode=mode, size=size)
        if count == 0:
            raise DataError(field, f"class folder {_relative(folder)} holds no PNG or JPEG images; add some or "
                                   f"remove the folder")


def _decode(image: ImageFile, channels: int, image_size: int | None, field: str) -> np.ndarray:
    """C×H×W uint8 pixels of one image, converted to ``channels`` and resized to ``image_size``."""
    from PIL import Image

    try:
        with Image.open(image.path) as opened:
            # The header was checked: a larger decode than it announced is refused, not run.
            opened.load()
            converted: Any = opened.convert("L" if channels == 1 else "RGB")
            if image_size is not None and converted.size != (image_size, image_size):
                converted = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(field, f"{_relative(image.path)} cannot be decoded (truncated or corrupt: {exc}); re-save it "
                               f"as PNG or JPEG") from exc
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _relative(path: Path) -> str:
    # The last three parts name a file well enough (train/cat/001.png) without the machine's own folders.
    return "/".join(path.parts[-3:])


def _name(image: ImageFile) -> str:
    return f"in {_relative(image.path)}"


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"
