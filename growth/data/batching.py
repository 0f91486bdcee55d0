"""Mini-batches sliced from tensors that already live on the training device.

Small datasets fit on the device whole, so a batch is one ``index_select``
with a slice of a permutation: no DataLoader workers, no per-sample Python.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(xb, yb)`` covering every sample once (the last batch may be short).

    With ``shuffle`` the order is one ``randperm`` drawn from ``generator``
    when this function is called (not when iteration starts), so the batches
    depend only on the generator's state at the call. The permutation is drawn
    on the generator's device and moved to ``x``'s device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    count = x.shape[0]
    stop = count - count % batch_size if drop_last else count
    if not shuffle:
        return _slices(x, y, batch_size, stop)
    if generator is None:
        raise ValueError("shuffle=True needs a torch.Generator, so that the order is reproducible")
    order = torch.randperm(count, generator=generator, device=generator.device).to(x.device)
    return _gathered(x, y, order, batch_size, stop)


def _slices(x: Tensor, y: Tensor, batch_size: int, stop: int) -> Iterator[tuple[Tensor, Tensor]]:
    # In order, batches are views: nothing is copied.
    for start in range(0, stop, batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def _gathered(x: Tensor, y: Tensor, order: Tensor, batch_size: int, stop: int) -> Iterator[tuple[Tensor, Tensor]]:
    y_order = order if y.device == x.device else order.to(y.device)
    for start in range(0, stop, batch_size):
        yield x.index_select(0, order[start:start + batch_size]), y.index_select(0, y_order[start:start + batch_size])
