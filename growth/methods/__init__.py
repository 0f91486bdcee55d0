"""Training methods that share the run loop: DessiLBI growth and the baselines.

``METHODS`` (``Method.registry``) is the one list of methods, in the order the
job format lists them: a method is a :class:`Method` subclass with a ``name``.
"""
# Imported in the order users see the methods listed (registration order).
from .base import Change, Method, RunContext
from .grow import Grow
from .dense import Dense  # isort: skip
from .l1_prune import L1Prune  # isort: skip
from .dessilbi_prune import DessiLBIPrune  # isort: skip
from .autogrow import AutoGrow  # isort: skip
from .sparse import ProxSgd, Rmda  # isort: skip

METHODS = Method.registry

__all__ = ["METHODS", "AutoGrow", "Change", "Dense", "DessiLBIPrune", "Grow", "L1Prune", "Method", "ProxSgd", "Rmda", "RunContext"]
