"""netgrow's growth engine: DessiLBI, growable networks, in-place widening and the run loop.

A pure library (torch and numpy; scikit-learn only for the digits data):

    import growth
    result = growth.run({"method": "grow", "model": {...}, "data": {"name": "digits"}})
"""
from .compare import compare
from .engine import run
from .errors import DataError, Interrupted, NetgrowError, SpecError
from .optim import RMDA, DessiLBI, ProxSGD
from .spec import parse_spec

__all__ = ["DataError", "DessiLBI", "Interrupted", "NetgrowError", "ProxSGD", "RMDA", "SpecError",
           "compare", "parse_spec", "run"]
