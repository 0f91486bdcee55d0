"""Train/validation/test splits: the container and the seeded stratified draw."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

Pair = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Splits:
    """A dataset ready for training: float32 N×C×H×W images, int64 labels.

    ``val`` is held out of the training data and drives growth decisions;
    ``test`` is only ever used for the reported accuracy. Images are
    normalised per channel with ``mean``/``std`` measured on ``train`` alone,
    so ``x * std + mean`` (per channel) gives back the [0, 1] pixels.
    """

    train: Pair
    val: Pair
    test: Pair
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def to(self, device: torch.device | str) -> Splits:
        """A copy with every tensor on ``device`` (the same object's tensors if already there)."""
        return dataclasses.replace(
            self,
            train=_pair_to(self.train, device),
            val=_pair_to(self.val, device),
            test=_pair_to(self.test, device),
        )


def _pair_to(pair: Pair, device: torch.device | str) -> Pair:
    x, y = pair
    return x.to(device), y.to(device)


def stratified_split(labels: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw ``count`` indices with class proportions kept; return ``(rest, drawn)``.

    Each class gives ``count * n_class / n`` samples, rounded so that the
    totals add up exactly (largest remainders first, ties to the lower class).
    Which samples a class gives is a random permutation drawn from
    ``generator``, so the same generator state gives the same split. Both index
    tensors are sorted, on the CPU.
    """
    labels = labels.detach().to("cpu", torch.int64)
    n = labels.numel()
    count = max(0, min(int(count), n))
    if count in (0, n):
        everything = torch.arange(n)
        empty = everything[:0]
        return (everything, empty) if count == 0 else (empty, everything)

    per_class = torch.bincount(labels)
    exact = per_class.double() * (count / n)
    quota = exact.floor().long()
    shortfall = count - int(quota.sum())
    if shortfall > 0:
        # Stable sort keeps the lower class first among equal remainders.
        by_remainder = torch.sort(quota.double() - exact, stable=True).indices
        quota[by_remainder[:shortfall]] += 1

    # Shuffle, then group by class without disturbing the shuffled order
    # inside each class; the first `quota[c]` of class c are drawn.
    shuffled = torch.randperm(n, generator=generator, device=generator.device).cpu()
    grouped = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    grouped_labels = labels[grouped]
    class_start = torch.cumsum(per_class, 0) - per_class
    rank_in_class = torch.arange(n) - class_start[grouped_labels]
    is_drawn = rank_in_class < quota[grouped_labels]
    return grouped[~is_drawn].sort().values, grouped[is_drawn].sort().values
