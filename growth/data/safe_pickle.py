"""Unpickle dataset files without letting them run code or exhaust memory.

The CIFAR "python version" files are pickles, and a pickle is a program: the
default unpickler imports and calls whatever global the file names
(``os.system`` included), so a doctored file under ``data.root`` would run code
in the worker. The only globals a genuine dataset pickle needs are numpy's
array reconstructors (and, for files re-pickled with protocol 2 under
Python 3, latin-1 ``_codecs.encode`` for bytes); every other global is refused
before it is imported.

Those reconstructors are still dangerous on their own, so each one is wrapped:

- no array or dtype may hold Python objects (``dtype.hasobject``): an object
  array is a list of pointers, and a pickle can set that flag on a raw ``V8``
  dtype through the dtype's state;
- every array allocation is charged against a budget, by default the size of
  the file itself, *before* numpy allocates: ``numpy.ndarray((1 << 29,))`` is
  20 bytes of pickle and 4 GiB of memory, and one memoized byte string can be
  the state of a thousand arrays. A genuine dataset file holds its pixels, so
  its arrays never need more bytes than the file has.
"""
from __future__ import annotations

import codecs
import importlib
import io
import math
import operator
import os
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np


class _AllocationBudget:
    """Bytes of array data the load may still allocate; every reconstructor charges it first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def charge(self, shape: Any, dtype: np.dtype, what: str) -> None:
        _refuse_objects(dtype, what)
        nbytes = _shape_size(shape, what) * max(dtype.itemsize, 1)
        if nbytes > self.left:
            raise pickle.UnpicklingError(
                f"refusing {what} of {nbytes} bytes: the file's arrays may take at most {self.limit} bytes "
                f"in all (the file's own size), {self.left} of them left")
        self.left -= nbytes


class _PendingArray(np.ndarray):
    """What ``_reconstruct`` returns: an empty array whose ``__setstate__`` (the pickle's BUILD) is checked.

    The unpickler calls ``__setstate__`` on whatever ``_reconstruct`` returned,
    and that is where numpy allocates the array's real shape; a subclass is the
    one place to see that state before the allocation. ``restricted_load``
    turns every such array back into a plain ``numpy.ndarray``.
    """

    _budget: _AllocationBudget

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("refusing an ndarray state that is not numpy's (version, shape, dtype, ...)")
        shape, dtype = state[-4], state[-3]
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"refusing an ndarray state whose dtype is a {type(dtype).__name__}")
        self._budget.charge(shape, dtype, "an array")
        super().__setstate__(state)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of numpy arrays of plain dtypes, within an allocation budget."""

    def __init__(self, file: IO[bytes], *, max_array_bytes: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals(_AllocationBudget(max_array_bytes))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: dataset pickles hold only arrays")
        return self._allowed[(module, name)]


def restricted_load(file: IO[bytes], *, max_array_bytes: int | None = None) -> Any:
    """``pickle.load`` through ``RestrictedUnpickler``.

    ``encoding="bytes"`` reads Python 2 pickles (the published CIFAR files)
    with their ``str`` keys and pixel buffers as ``bytes``, the way numpy
    expects them. ``max_array_bytes`` (default: the bytes left in ``file``)
    bounds the array data the load may allocate, in all.
    """
    if max_array_bytes is None:
        max_array_bytes = _bytes_left(file)
    content = RestrictedUnpickler(file, max_array_bytes=max_array_bytes, encoding="bytes").load()
    return _plain_arrays(content)


def _bytes_left(file: IO[bytes]) -> int:
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        position = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(position)
        return end - position


def _plain_arrays(value: Any) -> Any:
    """``value`` with every ``_PendingArray`` viewed as a plain ndarray (containers rebuilt, nothing copied)."""
    if isinstance(value, np.ndarray):
        _refuse_objects(value.dtype, "an array")
        return value.view(np.ndarray) if type(value) is not np.ndarray else value
    if isinstance(value, dict):
        return {_plain_arrays(key): _plain_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_arrays(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain_arrays(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(_plain_arrays(item) for item in value)
    return value


def _refuse_objects(dtype: np.dtype, what: str) -> None:
    if dtype.hasobject:
        raise pickle.UnpicklingError(
            f"refusing {what} of dtype {dtype!r}: it holds Python objects; dataset arrays hold numbers")


def _shape_size(shape: Any, what: str) -> int:
    dims = shape if isinstance(shape, tuple) else (shape,)
    try:
        sizes = [operator.index(dim) for dim in dims]
    except TypeError as err:
        raise pickle.UnpicklingError(f"refusing {what} with shape {shape!r}: not a tuple of integers") from err
    if any(size < 0 for size in sizes):
        raise pickle.UnpicklingError(f"refusing {what} with negative shape {shape!r}")
    return math.prod(sizes)


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 under Python 3 writes bytes as _codecs.encode(str, "latin1").
    # Other codecs (zlib, bz2, ...) have no business in a dataset file.
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals(budget: _AllocationBudget) -> dict[tuple[str, str], Callable[..., Any]]:
    # numpy 2 moved numpy.core to numpy._core; files written by either name
    # the module they were written with, so both spellings map to the same
    # function (resolved without importing the deprecated alias).
    multiarray = _first_module("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _first_module("numpy._core.numeric", "numpy.core.numeric")
    pending = type("_PendingArray", (_PendingArray,), {"_budget": budget})

    def dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
        made = np.dtype(obj, align, copy)
        _refuse_objects(made, "a dtype")
        return made

    def ndarray(shape: Any, dtype: Any = float, buffer: Any = None, offset: int = 0, strides: Any = None,
                order: Any = None) -> np.ndarray:
        if buffer is not None or strides is not None:
            raise pickle.UnpicklingError("refusing numpy.ndarray over a buffer or with strides")
        made_dtype = np.dtype(dtype)
        budget.charge(shape, made_dtype, "numpy.ndarray")
        return np.ndarray(shape, made_dtype, order=order or "C")

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        # The pickle names the subtype through the "numpy.ndarray" global, which resolves to the wrapper above.
        if subtype is not ndarray and subtype is not np.ndarray:
            raise pickle.UnpicklingError(f"refusing _reconstruct of {subtype!r}: only numpy.ndarray")
        made_dtype = np.dtype(dtype)
        budget.charge(shape, made_dtype, "_reconstruct")
        return multiarray._reconstruct(pending, shape, made_dtype)

    def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        # Views the bytes the file itself holds: charged like any other array, so memoized
        # bytes cannot back an unbounded number of (later copied) arrays.
        made_dtype = np.dtype(dtype)
        budget.charge(shape, made_dtype, "_frombuffer")
        return numeric._frombuffer(buf, made_dtype, shape, order)

    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy._core", "numpy.core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _first_module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} can be imported")
