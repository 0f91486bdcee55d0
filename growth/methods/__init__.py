"""Training methods that share the run loop: DessiLBI growth and the baselines."""
from .autogrow import AutoGrow
from .base import Change, Method
from .dense import Dense
from .grow import Grow
from .l1_prune import L1Prune
from .sparse import ProxSgd, Rmda

METHODS = Method.registry

__all__ = ["METHODS", "AutoGrow", "Change", "Dense", "Grow", "L1Prune", "Method", "ProxSgd", "Rmda"]
