"""netgrow's growth engine: DessiLBI, growable networks, in-place widening and the run loop.

A pure library (torch and numpy; scikit-learn only for the digits data):

    import growth
    result = growth.run({"method": "grow", "model": {...}, "data": {"name": "digits"}})
"""
from .errors import DataError, Interrupted, NetgrowError, SpecError
from .optim import DessiLBI

__all__ = ["DataError", "DessiLBI", "Interrupted", "NetgrowError", "RMDA", "ProxSGD", "SpecError",
           "compare", "parse_spec", "run"]


def __getattr__(name: str):  # keep `import growth` light: the run loop pulls in data and models
    if name == "run":
        from .engine import run

        return run
    if name == "parse_spec":
        from .spec import parse_spec

        return parse_spec
    if name == "compare":
        from .compare import compare

        return compare
    if name in ("RMDA", "ProxSGD"):
        from . import optim

        return getattr(optim, name)
    raise AttributeError(f"module 'growth' has no attribute {name!r}")
