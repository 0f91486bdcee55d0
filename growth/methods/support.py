"""The accuracy of the network DessiLBI has selected: W restricted to supp(Γ), BatchNorm recalibrated.

Section 5.2 of the journal paper reads the structure off Γ: the network it
selects keeps a weight only where Γ is non-zero (eq. 21). This module builds
that network as a *copy* of the live model — every lifted weight (conv and
hidden linear weights) times 1[Γ ≠ 0]; BatchNorm, biases and the classifier
head have no Γ and keep W — and measures its accuracy.

Zeroing filters changes what every later BatchNorm sees, so the copy's
running statistics are recomputed before it is evaluated: reset, then
averaged over all batches (``momentum=None``) of forward passes over
:func:`recalibration_samples` training images, in batches of about
:data:`RECALIBRATION_BATCH`, BatchNorm in training mode and every other module
in eval mode. The images are evenly spaced through the training split, and
each batch takes every k-th of them, so that both the images and every batch
span the split even where it is stored class by class (a user's image folder);
nothing is shuffled or augmented, so nothing draws from the run's generators; the
live model, its optimizer and its BatchNorm statistics are never written, and a
run's trajectory is the same whether or not this is computed
(tests/growth/test_support_accuracy.py).

How many images: a quarter of the training split, at least 256 and at most
1,024 (all of it when it is smaller). It runs every epoch, so its forward passes
must stay a small share of an epoch's training (forward, backward and a
DessiLBI step over the whole split): a quarter of the images bounds that share
on small data sets (digits: 305 of 1,222 images, ~0.1 s of a ~1 s epoch on
one CPU thread), and 1,024 images give every channel's mean and variance
thousands of values even after the last pooling. On digits the restricted
accuracy with 128 … 1,222 recalibration images differed by at most two of the
216 validation images. Large batches (256): the statistics then come from
forward passes whose earlier BatchNorm layers normalise with near-population
statistics, as the evaluated network does.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..data import Splits
from ..optim import DessiLBI
from ..optim.structure import lifted_params, structure_tensor
from ..training import Precision, to_memory_format

RECALIBRATION_BATCH = 256


def recalibration_samples(train_size: int) -> int:
    """How many training images recalibrate BatchNorm: a quarter, within [256, 1024] (all, if fewer)."""
    return min(train_size, max(256, min(1024, train_size // 4)))


def spread(total: int, count: int) -> Tensor:
    """``count`` indices evenly spaced over ``range(total)`` (⌊i · total / count⌋), the first one 0."""
    return torch.arange(count, dtype=torch.int64) * total // count


class LiveRun(Protocol):
    """What this module reads of ``growth.methods.RunContext`` (which it cannot import: base imports it)."""

    model: nn.Module
    optimizer: Optimizer
    splits: Splits
    precision: Precision
    channels_last: bool

    def evaluate(self, model: nn.Module | None = None, split: str = "val") -> float: ...


def has_support(optimizer: Optimizer) -> bool:
    """Whether ``optimizer`` keeps a Γ whose support selects a network (DessiLBI)."""
    return isinstance(optimizer, DessiLBI)


def restricted_copy(model: nn.Module, optimizer: Optimizer) -> nn.Module:
    """A copy of ``model`` with every weight DessiLBI lifts set to W ⊙ 1[Γ ≠ 0]; ``model`` is untouched.

    A lifted weight the optimizer has not stepped yet has Γ = 0 and is zero in the copy.
    """
    restricted = copy.deepcopy(model)
    names = {id(p): name for name, p in model.named_parameters()}
    copies = dict(restricted.named_parameters())
    with torch.no_grad():
        for p in restricted.parameters():
            p.grad = None  # the copy is never trained
        for p in lifted_params(optimizer):
            copies[names[id(p)]].mul_(structure_tensor(optimizer, p) != 0)
    return restricted


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: Tensor, batch_size: int, *,
                          precision: Precision | None = None, channels_last: bool = False) -> None:
    """Replace ``model``'s BatchNorm running statistics by their average over ``x``, in place.

    ``x`` is dealt into k = ⌈len(x) / batch_size⌉ batches, batch b taking
    ``x[b::k]``: sizes differ by at most one (no short last batch), and each
    batch spans ``x``. Each batch's statistics count equally. ``model`` is left
    in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not norms or x.shape[0] == 0:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
        norm.train()
    precision = precision or Precision("fp32", x.device)
    batches = math.ceil(x.shape[0] / batch_size)
    for b in range(batches):
        with precision.autocast():
            model(to_memory_format(x[b::batches], channels_last))
    model.eval()


def support_accuracies(ctx: LiveRun, splits: Sequence[str]) -> dict[str, float]:
    """Accuracy on each of ``splits`` of the network restricted to Γ's support (one copy for all)."""
    restricted = restricted_copy(ctx.model, ctx.optimizer)
    x, _ = ctx.splits.train
    picked = spread(x.shape[0], recalibration_samples(x.shape[0])).to(x.device)
    recalibrate_batchnorm(restricted, x[picked], RECALIBRATION_BATCH,
                          precision=ctx.precision, channels_last=ctx.channels_last)
    return {split: ctx.evaluate(restricted, split) for split in splits}
