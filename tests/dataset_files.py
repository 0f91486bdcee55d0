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
