"""Structured-sparsity training of a fixed architecture: RMDA and its baseline, proximal SGD.

Both use the group-lasso regulariser with weight ``regularizer.lam``; the share
of all-zero groups (the RMDA paper's "group sparsity") is reported every epoch.
RMDA restarts its dual averaging at every learning-rate milestone, as the paper does.
BatchNorm statistics are recalibrated before every evaluation (see
``recalibrate_batchnorm``): the prox step shrinks filters faster than the
running averages follow.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..optim import RMDA, ProxSGD
from ..optim._common import GroupLassoOptimizer
from ..optim.structure import group_sparsity
from ..training import recalibrate_batchnorm
from .base import Method, RunContext


class _Sparse(Method):
    optimizer_class: ClassVar[type[GroupLassoOptimizer]]
    optimizer_fields = {**Method.optimizer_fields, "lam": "regularizer.lam"}

    def make_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        t = self.spec.train
        return self.optimizer_class(param_groups, lr=t.lr, momentum=t.momentum, lam=self.spec.regularizer.lam,
                                    weight_decay=t.weight_decay)

    def before_evaluation(self, ctx: RunContext) -> None:
        recalibrate_batchnorm(ctx.model, ctx.splits.train[0], batch_size=max(ctx.spec.train.batch_size, 256))

    def epoch_sparsity(self, ctx: RunContext) -> float | None:
        return group_sparsity(ctx.optimizer)

    def result_extras(self, ctx: RunContext) -> dict[str, Any]:
        return {"group_sparsity": group_sparsity(ctx.optimizer)}


class Rmda(_Sparse):
    name = "rmda"
    optimizer_class = RMDA

    def lr_changed(self, ctx: RunContext, old: float, new: float) -> None:
        ctx.optimizer.restart()  # type: ignore[attr-defined]  # the paper restarts at every lr milestone


class ProxSgd(_Sparse):
    name = "prox_sgd"
    optimizer_class = ProxSGD
