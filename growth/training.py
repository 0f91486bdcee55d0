"""One epoch of training and one evaluation pass over tensors already on the device.

Small datasets live as one tensor on the training device (see growth.data), so an
epoch is a loop over index slices: no per-sample Python, no DataLoader.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import augment, batches
from .errors import Interrupted, SpecError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``train.precision`` → the dtype forward passes autocast to (None: no autocast)."""


class Precision:
    """Mixed precision for one run: autocast for forward passes, loss scaling for fp16.

    Parameters, gradients and every optimizer state tensor (DessiLBI's momentum
    buffer, V and Γ) stay float32: autocast only lowers the precision of
    activations inside the forward pass. Under ``"fp16"`` a ``GradScaler``
    multiplies the loss so that small gradients survive the half-precision
    backward pass, and ``unscale_`` divides the scale out of the gradients
    *before* the optimizer step, so DessiLBI's V and Γ (which move with W and
    the gradient, not with the loss) never see a scaled gradient. A step whose
    gradients overflowed is skipped whole (W, V, Γ and the buffer unchanged) and
    the scale shrinks, as ``GradScaler.step`` does for any optimizer without
    its own scaling support. ``"bf16"`` has float32's range and needs no scaler.
    """

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu") -> None:
        if name not in PRECISIONS:
            raise SpecError("train.precision", f"must be one of {', '.join(PRECISIONS)}, got {name!r}")
        self.name = name
        self.device = torch.device(device)
        self.dtype = PRECISIONS[name]
        if name == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SpecError("train.precision", "this GPU has no bfloat16 support; use 'fp16' or 'fp32'")
        self.scaler = torch.amp.GradScaler(self.device.type) if name == "fp16" else None

    def autocast(self) -> AbstractContextManager[Any]:
        """The context a forward pass runs in."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Back-propagate ``loss`` and step ``optimizer``, with loss scaling under fp16."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)  # true gradients before the step (see the class docstring)
        self.scaler.step(optimizer)      # skipped when a gradient is inf or NaN
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The loss scale and its growth tracker (empty unless fp16): checkpointed with the run."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """A batch of images in the memory format the model's convolutions use."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


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
    precision: Precision | None = None,
    channels_last: bool = False,
) -> float:
    """Train one epoch; returns the mean training loss. Polls ``should_stop`` at batch boundaries.

    ``precision`` (default fp32) sets autocast and loss scaling; ``channels_last``
    hands the model its batches in that memory format (convert the model too).
    """
    precision = precision or Precision("fp32", x.device)
    model.train()
    total = torch.zeros((), device=x.device)
    seen = 0
    for xb, yb in batches(x, y, batch_size, shuffle, shuffle=True):
        if should_stop is not None and should_stop():
            raise Interrupted(epoch)
        if augmenter is not None:
            xb = augment(xb, augmenter)
        xb = to_memory_format(xb, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            # cross entropy autocasts to float32 itself; the loss is float32 either way
            loss = F.cross_entropy(model(xb), yb)
        precision.backward_and_step(loss, optimizer)
        # Accumulate on the device: one host sync per epoch, not per batch.
        total += loss.detach() * yb.shape[0]
        seen += yb.shape[0]
    return float(total) / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024, *,
             precision: Precision | None = None, channels_last: bool = False) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (running BatchNorm statistics), under the run's precision."""
    if x.shape[0] == 0:
        return 0.0
    precision = precision or Precision("fp32", x.device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        with precision.autocast():
            logits = model(to_memory_format(x[start:start + batch_size], channels_last))
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
