"""Field checks for the job format: the job spec and its ``data`` and ``model`` sections.

Each check returns the value it accepted (normalised: ``3`` for a float field
becomes ``3.0``) or raises :class:`~growth.errors.SpecError` naming the dotted
field (``model.layers[2]``) and what a valid value looks like.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SpecError


def dotted(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level (``path == ""``)."""
    return f"{path}.{key}" if path else key


def mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be a JSON object, got {type(value).__name__}")
    return dict(value)


def reject_unknown(spec: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Refuse any key of ``spec`` not in ``allowed`` (listed in the error in the order given)."""
    allowed = list(allowed)
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise SpecError(dotted(path, unknown[0]), f"unknown field; valid fields are {', '.join(allowed)}")


def require(spec: Mapping[str, Any], key: str, path: str, example: str) -> Any:
    if key not in spec:
        raise SpecError(dotted(path, key), f"missing; give it, e.g. {example}")
    return spec[key]


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(field, f"must be true or false, got {value!r}")
    return value


def integer(value: Any, field: str, *, minimum: int | None = None, expected: str | None = None) -> int:
    """An integer, at least ``minimum`` if given; ``expected`` describes a valid value in the error."""
    if expected is None:
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    # bool is an int subclass, but `"limit": true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise SpecError(field, f"must be {expected}, got {value!r}")
    return value


def number(value: Any, field: str) -> float:
    """A finite number (an integer is accepted and returned as a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(field, f"must be a finite number, got {value!r}")
    return float(value)


def string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string, got {value!r}")
    return value


def in_range(value: float, field: str, lo: float | None = None, hi: float | None = None, *,
             lo_open: bool = False, hi_open: bool = False, hint: str = "") -> float:
    """``value`` within [lo, hi] (``lo_open``/``hi_open`` exclude an end); None means unbounded."""
    too_low = lo is not None and not (value > lo if lo_open else value >= lo)
    too_high = hi is not None and not (value < hi if hi_open else value <= hi)
    if too_low or too_high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        interval = f"{left}{'-∞' if lo is None else lo}, {'∞' if hi is None else hi}{right}"
        raise SpecError(field, f"must be in {interval}, got {value!r}" + (f" ({hint})" if hint else ""))
    return value
