"""``load_dataset``: from a data spec to normalised train/val/test tensors.

Every dataset goes through the same steps, in this order, all seeded:
read → carve a test set (datasets without one) → cap the training pool
(``limit``) → hold out validation → scale to [0, 1] → resize → normalise with
the training split's per-channel statistics.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from growth.data import user
from growth.data.cifar import read_cifar10, read_cifar100
from growth.data.digits import read_digits
from growth.data.mnist import read_fashion_mnist, read_mnist
from growth.data.raw import RawDataset
from growth.data.spec import validate_data_spec
from growth.data.splits import Splits, stratified_split
from growth.data.synthetic import make_synthetic
from growth.errors import SpecError

# Below this a channel is constant: dividing by its std would blow it up.
MIN_STD = 1e-6

READERS: dict[str, Callable[[dict[str, Any]], RawDataset]] = {
    "digits": lambda spec: read_digits(),
    "synthetic": lambda spec: make_synthetic(
        spec["num_classes"], spec["channels"], spec["size"], spec["samples"], spec["noise"]
    ),
    "cifar10": lambda spec: read_cifar10(spec["root"]),
    "cifar100": lambda spec: read_cifar100(spec["root"]),
    "mnist": lambda spec: read_mnist(spec["root"]),
    "fashion_mnist": lambda spec: read_fashion_mnist(spec["root"]),
    "npz": user.read,
    "image_folder": user.read,
}


def load_dataset(data_spec: Mapping[str, Any], seed: int) -> Splits:
    """Read the dataset ``data_spec`` names and split it by ``seed`` (same seed, same split).

    The validation set comes out of the training data, never the test set;
    ``test_fraction`` applies only to datasets without a test split of their
    own. Tensors are on the CPU; ``Splits.to(device)`` moves them.
    """
    spec = validate_data_spec(data_spec)
    raw = READERS[spec["name"]](spec)
    generator = torch.Generator().manual_seed(int(seed))

    if raw.test_images is not None and raw.test_labels is not None:
        pool_x, pool_y = raw.train_images, raw.train_labels
        test_x, test_y = raw.test_images, raw.test_labels
    else:
        total = raw.train_labels.numel()
        # At least one test sample, and at least one left to train on.
        test_count = min(max(1, round(spec["test_fraction"] * total)), total - 1)
        pool_idx, test_idx = stratified_split(raw.train_labels, test_count, generator)
        pool_x, pool_y = raw.train_images[pool_idx], raw.train_labels[pool_idx]
        test_x, test_y = raw.train_images[test_idx], raw.train_labels[test_idx]

    if spec["limit"] is not None and spec["limit"] < pool_y.numel():
        _, kept = stratified_split(pool_y, spec["limit"], generator)
        pool_x, pool_y = pool_x[kept], pool_y[kept]

    train_idx, val_idx = stratified_split(pool_y, round(spec["val_fraction"] * pool_y.numel()), generator)
    if train_idx.numel() == 0:
        raise SpecError("data.val_fraction", f"leaves no training samples out of {pool_y.numel()}; lower it")

    train_x = _prepare_images(pool_x[train_idx], raw.scale, spec["image_size"])
    val_x = _prepare_images(pool_x[val_idx], raw.scale, spec["image_size"])
    test_x = _prepare_images(test_x, raw.scale, spec["image_size"])

    mean, std = channel_stats(train_x)
    for images in (train_x, val_x, test_x):
        normalise_(images, mean, std)

    channels, height, width = train_x.shape[1:]
    return Splits(
        train=(train_x, pool_y[train_idx]),
        val=(val_x, pool_y[val_idx]),
        test=(test_x, test_y.to(torch.int64)),
        num_classes=raw.num_classes,
        input_shape=(int(channels), int(height), int(width)),
        class_names=raw.class_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) std of N×C×H×W images; constant channels get std 1."""
    var, mean = torch.var_mean(images, dim=(0, 2, 3), correction=0)
    std = var.sqrt()
    return mean, torch.where(std > MIN_STD, std, torch.ones_like(std))


def normalise_(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """In place: (images - mean) / std per channel."""
    shape = (1, -1, 1, 1)
    return images.sub_(mean.view(shape)).div_(std.view(shape))


def resize(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of N×C×H×W float images to size×size.

    Antialiased when shrinking, so that downsampled images average their
    pixels rather than alias; plain bilinear when enlarging (antialias has no
    effect there).
    """
    if images.shape[-2:] == (size, size):
        return images
    shrinking = size < images.shape[-1] or size < images.shape[-2]
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def _prepare_images(images: Tensor, scale: float, image_size: int | None) -> Tensor:
    # A fresh float32 tensor (never the reader's storage), so later steps may work in place.
    unit = images.to(torch.float32, copy=True).mul_(scale)
    return unit if image_size is None else resize(unit, image_size)
