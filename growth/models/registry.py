"""Model families by name, and the spec checks they share.

A family is a :class:`~growth.models.base.GrowableNet` subclass registered with
``@register_family("name")``. ``build_model(spec)`` validates the spec with the
family's ``validate_spec`` and builds it, so every model in the system comes from a
JSON-serialisable spec that ``model.to_spec()`` can write back out.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from growth import validation as check
from growth.errors import SpecError

if TYPE_CHECKING:
    from growth.models.base import GrowableNet

_FAMILIES: dict[str, type[GrowableNet]] = {}

FamilyT = TypeVar("FamilyT", bound="type[GrowableNet]")


def register_family(name: str) -> Callable[[FamilyT], FamilyT]:
    """Class decorator: make ``cls`` buildable as ``{"family": name, ...}``."""

    def register(cls: FamilyT) -> FamilyT:
        if name in _FAMILIES and _FAMILIES[name] is not cls:
            raise ValueError(f"model family {name!r} is already registered by {_FAMILIES[name].__qualname__}")
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return register


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def family_class(name: str) -> type[GrowableNet]:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise SpecError("model.family", f"unknown model family {name!r}; use one of {family_names()}") from None


def model_json_schema() -> dict[str, Any]:
    """JSON schema of a model spec: one of the registered families' schemas, told apart by ``family``."""
    return {"title": "ModelSpec", "oneOf": [_FAMILIES[name].json_schema() for name in family_names()]}


POSITIVE_INT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1}
INPUT_SIZE_SCHEMA: dict[str, Any] = {
    "description": "the image size the model is built for: H or [H, W] (a job takes it from its data)",
    "oneOf": [POSITIVE_INT_SCHEMA, {"type": "array", "items": POSITIVE_INT_SCHEMA, "minItems": 2, "maxItems": 2}],
}
INPUT_OUTPUT_SCHEMA: dict[str, Any] = {
    "in_channels": {**POSITIVE_INT_SCHEMA, "description": "image channels (a job takes them from its data)"},
    "num_classes": {**POSITIVE_INT_SCHEMA, "description": "classes (a job takes them from its data)"},
    "input_size": INPUT_SIZE_SCHEMA,
}


def validate_model_spec(spec: Any, path: str = "model") -> dict[str, Any]:
    """Check a model spec and return a normalised copy with every default filled in.

    ``path`` is the spec's place in the enclosing document, used to name bad fields
    (``model.layers[3]``). Raises :class:`SpecError` on the first problem found.
    """
    spec = check.mapping(spec, path)
    family = spec.get("family")
    if family is None:
        raise SpecError(f"{path}.family", f"missing; use one of {family_names()}")
    if not isinstance(family, str) or family not in _FAMILIES:
        raise SpecError(f"{path}.family", f"unknown model family {family!r}; use one of {family_names()}")
    return _FAMILIES[family].validate_spec(spec, path)


def build_model(
    spec: Mapping[str, Any],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> GrowableNet:
    """Validate ``spec`` and build the model, Kaiming-initialised from ``generator``.

    ``device="meta"`` builds shapes only (no memory, no initialisation): what
    :func:`growth.counting.count` uses.
    """
    normalised = validate_model_spec(spec)
    return _FAMILIES[normalised["family"]].from_spec(normalised, generator=generator, device=device)


# -- field checks the families share, on top of growth.validation ------------------------


def positive_int(value: Any, field: str, what: str = "a positive integer") -> int:
    # `true` as a width is a typo, not a width of 1 (check.integer refuses bools).
    return check.integer(value, field, minimum=1, expected=what)


def int_list(value: Any, field: str, *, allow_empty: bool, example: str) -> list[int]:
    if not isinstance(value, list):
        raise SpecError(field, f"must be a list of positive integers, e.g. {example}")
    if not value and not allow_empty:
        raise SpecError(field, f"must not be empty, e.g. {example}")
    return [positive_int(v, f"{field}[{i}]") for i, v in enumerate(value)]


def input_size(value: Any, field: str) -> list[int]:
    """``32`` or ``[H, W]`` → ``[H, W]``: the image size the model is built for."""
    if isinstance(value, list):
        if len(value) != 2:
            raise SpecError(field, f"must be an integer or [height, width], got {value!r}")
        return [positive_int(v, f"{field}[{i}]") for i, v in enumerate(value)]
    size = positive_int(value, field, "a positive integer or [height, width]")
    return [size, size]
