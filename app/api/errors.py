"""Turning ``growth.errors.SpecError`` into FastAPI's 422 body.

A spec error names a dotted field (``model.layers[2]``); clients get the same
``{"detail": [{"loc": ["body", "model", "layers", 2], "msg", "type"}]}`` shape
that FastAPI uses for its own validation errors, so one error handler serves both.
"""
from __future__ import annotations

import re

from fastapi.exceptions import RequestValidationError

from growth.errors import SpecError

_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def field_loc(field: str) -> list[str | int]:
    """``"model.layers[2]"`` → ``["model", "layers", 2]``; ``"spec"`` (the whole document) → ``[]``."""
    if field == "spec":
        return []
    return [int(index) if index else name for index, name in _PART.findall(field)]


def validation_error(loc: list[str | int], message: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": tuple(loc), "msg": message, "type": kind}])


def spec_validation_error(exc: SpecError, kind: str = "spec_error") -> RequestValidationError:
    return validation_error(["body", *field_loc(exc.field)], exc.message, kind)
