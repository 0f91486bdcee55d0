"""Optimizers that learn sparse structure while training, and the read-out of that structure.

DessiLBI (the growth method's optimizer) and the structured-sparsity
baselines RMDA and ProxSGD; the proximal maps they share are in ``prox``, the
torch.optim plumbing they share (closure, gathering params with gradients,
the foreach default, argument checks) in ``_common``. ``structure`` reads what
they learned: the filters Γ selects, masks, group sparsity.
"""
from growth.optim.dessilbi import DessiLBI
from growth.optim.prox_sgd import ProxSGD
from growth.optim.rmda import RMDA

__all__ = ["DessiLBI", "ProxSGD", "RMDA"]
