"""DessiLBI growth (section 5.3 of the journal paper, eq. 23).

Every J epochs each unit's ratio = #filters selected by Γ / #filters is read
off the live optimizer state; every unit with ratio ≥ τ is widened in place to
max(n + a, ⌊f·n⌋) filters (a = ``add`` for plain nets, ``residual_add`` for
residual ones), capped at ``max_width``. When growth ends is ``growth.stop``:

- ``"no_trigger"`` (the default): growth stops at the first check where no
  unit triggers. It is the rule of the authors' public code, and the rule
  every example, benchmark result and test so far was produced with; making
  ``"plateau"`` the default would silently change all of them, and it needs a
  tolerance the paper never gives.
- ``"plateau"``: the journal paper's wording, growth continues "until the loss
  does not change much, or the maximum number of epoch is reached". A check
  where no unit triggers changes nothing and growth goes on; growth stops at
  the first check t (0-based epoch, (t + 1) a multiple of J) where
  |L_t − L_{t−J}| / max(|L_{t−J}|, 1e-12) < ``plateau_tol``, L being the
  epoch's mean training loss (:func:`plateaued`), or where every unit is at
  ``max_width``. A plateaued check widens nothing: the filters it would add
  would go into fine-tuning unselected and untrained.

Under both rules growth also ends after ``train.epochs`` epochs; then the network is fine-tuned for
``finetune_epochs`` at ``finetune_lr_factor`` times the learning rate of the last growth epoch (lr
milestones included), so fine-tuning is always slower than the growth it follows, as the paper asks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .. import surgery
from ..optim import DessiLBI
from .base import Change, Method, RunContext, step_lr


# The spec field each DessiLBI argument comes from, for errors (see ``base.spec_fields``).
DESSILBI_FIELDS = {
    **Method.optimizer_fields,
    **{arg: f"optimizer.{arg}" for arg in ("kappa", "nu", "lam", "beta_min")},
}


def dessilbi_optimizer(spec: Any, param_groups: list[dict[str, Any]]) -> DessiLBI:
    """DessiLBI with the job's ``optimizer`` section (κ, ν, λ, …) and ``train`` lr, momentum and weight decay."""
    t, o = spec.train, spec.optimizer
    return DessiLBI(param_groups, lr=t.lr, kappa=o.kappa, nu=o.nu, lam=o.lam, momentum=t.momentum,
                    weight_decay=t.weight_decay, magnitude_scaling=o.magnitude_scaling, beta_min=o.beta_min)


_TINY_LOSS = 1e-12  # the relative change of a loss that reached zero stays finite


def plateaued(losses: Sequence[float], every: int, tol: float) -> bool:
    """Whether the training loss stopped changing: |L_t − L_{t−J}| / max(|L_{t−J}|, 1e-12) < ``tol``.

    ``losses[t]`` is epoch t's mean training loss, the last entry the epoch just
    trained; J = ``every``. False while there is no loss J epochs back (the
    first check of a run) and for a non-finite loss.
    """
    if len(losses) <= every:
        return False
    now, before = losses[-1], losses[-1 - every]
    return abs(now - before) / max(abs(before), _TINY_LOSS) < tol


def grown_width(width: int, add: int, factor: float, max_width: int) -> int:
    return min(max_width, max(width + add, math.floor(factor * width)))


class Grow(Method):
    name = "grow"
    optimizer_fields = DESSILBI_FIELDS

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.finetune_start: int | None = None  # first fine-tune epoch, once growth has stopped

    @classmethod
    def epoch_budget(cls, spec: Any) -> int:
        return spec.train.epochs + spec.growth.finetune_epochs

    def make_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return dessilbi_optimizer(self.spec, param_groups)

    def schedule(self, epoch: int) -> tuple[str, float] | None:
        t, g = self.spec.train, self.spec.growth
        if self.finetune_start is None and epoch >= t.epochs:
            self.finetune_start = t.epochs  # the growth phase ran out of epochs
        if self.finetune_start is None:
            return "grow", self.growth_lr(epoch)
        if epoch - self.finetune_start < g.finetune_epochs:
            return "finetune", self.growth_lr(self.finetune_start - 1) * g.finetune_lr_factor
        return None

    def growth_lr(self, epoch: int) -> float:
        t = self.spec.train
        return step_lr(t.lr, max(epoch, 0), t.lr_milestones, t.lr_gamma)

    def after_epoch(self, ctx: RunContext, epoch: int, val_accuracy: float) -> list[Change]:
        g = self.spec.growth
        if self.finetune_start is not None or (epoch + 1) % g.every:
            return []
        stats = ctx.unit_stats()
        if g.stop == "plateau" and self._plateau_reached(ctx, stats):
            self.finetune_start = epoch + 1
            return []
        residual = ctx.model.to_spec()["family"] == "resnet"
        add = g.residual_add if residual else g.add
        change = Change("widen")
        for stat in stats:
            if stat.ratio >= g.threshold and stat.width < g.max_width:
                change.units[stat.name] = (stat.width, grown_width(stat.width, add, g.factor, g.max_width))
        # One batched call rewrites every tensor once (a conv is both a producer and a consumer).
        surgery.widen_units(ctx.model, ctx.optimizer, {name: new for name, (_, new) in change.units.items()},
                            generator=ctx.init_rng)
        if not change.units:
            if g.stop == "no_trigger":
                self.finetune_start = epoch + 1
            return []
        return [change]

    def _plateau_reached(self, ctx: RunContext, stats: Sequence[Any]) -> bool:
        g = self.spec.growth
        # The history holds every earlier epoch of this run (restored on resume); the epoch just
        # trained is not in it yet.
        losses = [row["train_loss"] for row in ctx.history] + [ctx.train_loss]
        return plateaued(losses, g.every, g.plateau_tol) or all(s.width >= g.max_width for s in stats)

    def state_dict(self) -> dict[str, Any]:
        return {"finetune_start": self.finetune_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.finetune_start = state["finetune_start"]
