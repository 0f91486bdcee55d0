"""Tiny dataset folders in the real on-disk formats, for the reader and the service tests."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_tiny_mnist(folder: Path, gz: bool, train_size: int = 20,
                     test_size: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, size=(train_size, 28, 28)).astype(np.uint8)
    train_y = (np.arange(train_size) % 10).astype(np.uint8)
    test_x = rng.integers(0, 256, size=(test_size, 28, 28)).astype(np.uint8)
    test_y = np.array([7, 2, 1, 0, 4][:test_size], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", train_x, 0x00000803)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", train_y, 0x00000801)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test_x, 0x00000803)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", test_y, 0x00000801)
    return train_x, train_y, test_x, test_y


def write_learnable_idx(folder: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> None:
    """The four gzipped IDX files of a small balanced 10-class 28×28 set a conv net can learn.

    Class c is a bright 7×7 square at one of ten places over uniform noise, so
    accuracy moves within a few epochs and growth decisions have something to see.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def images(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        pixels = rng.integers(0, 120, size=(labels.size, 28, 28))
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            pixels[i, 3 + 12 * row:10 + 12 * row, 1 + 5 * col:8 + 5 * col] += 135
        return pixels.astype(np.uint8), labels.astype(np.uint8)

    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        x, y = images(per_class)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x, 0x00000803)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y, 0x00000801)
