"""One epoch of training and one evaluation pass over tensors already on the device.

Small datasets live as one tensor on the training device (see growth.data), so an
epoch is a loop over index slices: no per-sample Python, no DataLoader.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import augment, batches
from .errors import Interrupted


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import SpecError

        raise SpecError("train.device", f"{name!r} asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    shuffle: torch.Generator,
    augmenter: torch.Generator | None,
    epoch: int,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """Train one epoch; returns the mean training loss. Polls ``should_stop`` at batch boundaries."""
    model.train()
    total = torch.zeros((), device=x.device)
    seen = 0
    for xb, yb in batches(x, y, batch_size, shuffle, shuffle=True):
        if should_stop is not None and should_stop():
            raise Interrupted(epoch)
        if augmenter is not None:
            xb = augment(xb, augmenter)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        # Accumulate on the device: one host sync per epoch, not per batch.
        total += loss.detach() * yb.shape[0]
        seen += yb.shape[0]
    return float(total) / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (running BatchNorm statistics)."""
    if x.shape[0] == 0:
        return 0.0
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start:start + batch_size])
        correct += (logits.argmax(dim=1) == y[start:start + batch_size]).sum()
    model.train(was_training)
    return int(correct) / x.shape[0]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: Tensor, batch_size: int) -> None:
    """Recompute every BatchNorm's running statistics as exact averages over ``x``.

    Proximal methods move whole filters towards zero between batches, so the
    exponential running averages lag behind the weights and eval-mode accuracy
    swings; one forward pass in train mode with cumulative averaging fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    for start in range(0, x.shape[0], batch_size):
        model(x[start:start + batch_size])
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)
