"""What the pruning methods share: train, remove filters once, fine-tune.

``l1_prune`` and ``dessilbi_prune`` differ only in how the network is trained
and which filters they keep (:meth:`PruneThenFinetune.kept_filters`). Both
remove the others at the end of the last training epoch (``surgery.prune``,
one ``"prune"`` change listing unit → [old, new] width), then fine-tune for
``prune.finetune_epochs`` at the constant ``prune.finetune_lr`` with
``prune.finetune_momentum`` and ``prune.finetune_weight_decay``.
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from .. import surgery
from .base import Change, Method, RunContext, step_lr


class PruneThenFinetune(Method):
    """A method with the phases ``train_phase`` (``training_epochs``) then ``"finetune"``."""

    train_phase: ClassVar[str] = "train"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.train_epochs = self.training_epochs(spec)
        self.pruned = False

    @classmethod
    def training_epochs(cls, spec: Any) -> int:
        """Epochs before pruning; the lr milestones count from the first of them."""
        return spec.train.epochs

    @classmethod
    def epoch_budget(cls, spec: Any) -> int:
        return cls.training_epochs(spec) + spec.prune.finetune_epochs

    def schedule(self, epoch: int) -> tuple[str, float] | None:
        t, p = self.spec.train, self.spec.prune
        if epoch < self.train_epochs:
            return self.train_phase, step_lr(t.lr, epoch, t.lr_milestones, t.lr_gamma)
        if epoch < self.train_epochs + p.finetune_epochs:
            return "finetune", p.finetune_lr
        return None

    def after_epoch(self, ctx: RunContext, epoch: int, val_accuracy: float) -> list[Change]:
        if epoch == self.train_epochs - 1 and not self.pruned:
            return self.prune(ctx)
        return []

    def kept_filters(self, ctx: RunContext) -> dict[str, Tensor]:
        """Unit name → indices (ascending) of the channels to keep; a unit not named keeps all."""
        raise NotImplementedError

    def prune(self, ctx: RunContext) -> list[Change]:
        # Every unit's choice is read before any surgery: removing a unit's channels also
        # removes input channels of the next unit's filters, and their optimizer state with them.
        kept = self.kept_filters(ctx)
        change = Change("prune")
        for name, keep in kept.items():
            unit = ctx.model.unit(name)
            if keep.numel() < unit.width:
                change.units[name] = (unit.width, keep.numel())
                surgery.prune(ctx.model, ctx.optimizer, unit, keep)
        self.pruned = True
        self.start_finetuning(ctx)
        return [change] if change.units else []

    def start_finetuning(self, ctx: RunContext) -> None:
        """Li et al.'s fine-tuning hyper-parameters, on the optimizer that trained the network."""
        p = self.spec.prune
        for group in ctx.optimizer.param_groups:
            group["momentum"] = p.finetune_momentum
            group["weight_decay"] = p.finetune_weight_decay

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruned = state["pruned"]
