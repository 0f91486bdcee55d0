"""Unpickle dataset files without letting them run code.

The CIFAR "python version" files are pickles, and a pickle is a program: the
default unpickler imports and calls whatever global the file names
(``os.system`` included), so a doctored file under ``data.root`` would run code
in the worker. The only globals a genuine dataset pickle needs are numpy's
array reconstructors (and, for files re-pickled with protocol 2 under
Python 3, latin-1 ``_codecs.encode`` for bytes); every other global is refused
before it is imported.
"""
from __future__ import annotations

import codecs
import importlib
import pickle
from collections.abc import Callable
from functools import cache
from typing import IO, Any

import numpy as np


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of numpy arrays of plain dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: dataset pickles hold only arrays")
        return allowed[(module, name)]


def restricted_load(file: IO[bytes]) -> Any:
    """``pickle.load`` through ``RestrictedUnpickler``.

    ``encoding="bytes"`` reads Python 2 pickles (the published CIFAR files)
    with their ``str`` keys and pixel buffers as ``bytes``, the way numpy
    expects them.
    """
    return RestrictedUnpickler(file, encoding="bytes").load()


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 under Python 3 writes bytes as _codecs.encode(str, "latin1").
    # Other codecs (zlib, bz2, ...) have no business in a dataset file.
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


@cache
def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    # numpy 2 moved numpy.core to numpy._core; files written by either name
    # the module they were written with, so both spellings map to the same
    # function (resolved without importing the deprecated alias).
    multiarray = _first_module("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _first_module("numpy._core.numeric", "numpy.core.numeric")
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy._core", "numpy.core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def _first_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} can be imported")
