"""Optimizers that learn sparse structure while training.

DessiLBI (the growth method's optimizer) and the structured-sparsity
baselines; the group-lasso proximal maps they share are in ``prox``, the
torch.optim plumbing (closure, gathering params with gradients, RMDA's and
ProxSGD's common options) in ``_common``.
"""
from growth.optim.dessilbi import (
    DessiLBI,
    StructureMasks,
    masks,
    sparse_weights,
    support_counts,
    unit_support,
)
from growth.optim.prox_sgd import ProxSGD
from growth.optim.rmda import RMDA

__all__ = [
    "ProxSGD",
    "RMDA",
    "DessiLBI",
    "StructureMasks",
    "masks",
    "sparse_weights",
    "support_counts",
    "unit_support",
]
