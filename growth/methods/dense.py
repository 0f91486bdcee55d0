"""Plain momentum-SGD training of a fixed architecture: the "full model" column."""
from __future__ import annotations

from .base import Method


class Dense(Method):
    name = "dense"
