"""What every growable model family provides.

A :class:`GrowableNet` knows its growth units — sets of channels that must grow or
shrink together — and which modules produce and consume them, so that
:mod:`growth.surgery` can change widths without knowing the family. Widths are read
from the live modules, so ``to_spec()`` and ``Unit.width`` are right after surgery.
"""
from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

# The final linear layer of every family has this qualified name; it maps features to
# logits, so it is never a growth unit and is not sparsified.
CLASSIFIER_HEAD = "classifier.fc"


@dataclass(frozen=True, eq=False)
class Unit:
    """A set of channels that grows or shrinks as one.

    ``producers`` are the (conv, BatchNorm-or-None) pairs whose output channels *are*
    the unit (several for a residual stage: every block's last conv and the
    projection shortcut); ``consumers`` are the conv/linear modules whose input
    channels are the unit (dim 1 of their weight).
    """

    name: str
    residual: bool
    producers: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]
    consumers: list[nn.Conv2d | nn.Linear] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.producers[0][0].out_channels

    def __repr__(self) -> str:
        return f"Unit({self.name!r}, width={self.width}, residual={self.residual})"


class GrowableNet(nn.Module, ABC):
    """Base class of model families built from specs (see ``registry.register_family``)."""

    family: ClassVar[str]
    input_shape: tuple[int, int, int]  # (C, H, W) the model is built for

    @classmethod
    @abstractmethod
    def validate_spec(cls, spec: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Check ``spec`` (the family is already known) and return it normalised."""

    @classmethod
    @abstractmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of this family's spec, for API documents and fuzzers.

        It states the shape ``validate_spec`` checks (keys, types, bounds); rules
        that span fields (a pool that shrinks the input below a pixel) stay with
        ``validate_spec``. ``in_channels`` and ``num_classes`` are optional here: a
        job fills them from its data. JSON Schema counts 8.0 as an integer; the
        validators, like every integer field of a job spec, want 8.
        """

    @classmethod
    @abstractmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> GrowableNet:
        """Build from a *normalised* spec; use ``registry.build_model`` from outside."""

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """The spec of the current architecture: ``build_model(m.to_spec())`` has m's shapes."""

    @abstractmethod
    def units(self) -> list[Unit]:
        """Growth units in network order."""

    def unit(self, name: str) -> Unit:
        for unit in self.units():
            if unit.name == name:
                return unit
        raise KeyError(f"{self.family} model has no unit {name!r}; units are {[u.name for u in self.units()]}")

    def structural_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Conv and hidden linear weights: the filters that DessiLBI / group lasso act on."""
        for module_name, module in self.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear) and module_name != CLASSIFIER_HEAD:
                yield f"{module_name}.weight", module.weight

    def param_groups(self, **extra: Any) -> list[dict[str, Any]]:
        """Two optimizer groups: structural weights and everything else.

        Both carry ``structural`` (DessiLBI lifts these) and ``regularized``
        (RMDA / prox-SGD shrink these); ``extra`` (e.g. ``lr=0.1``) goes into both.
        """
        structural_ids = {id(p) for _, p in self.structural_parameters()}
        structural = [p for p in self.parameters() if id(p) in structural_ids]
        rest = [p for p in self.parameters() if id(p) not in structural_ids]
        return [
            {"params": structural, "structural": True, "regularized": True, **extra},
            {"params": rest, "structural": False, "regularized": False, **extra},
        ]


def kaiming_normal_(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """He et al. (2015) init, fan-in mode for ReLU: N(0, 2 / fan_in), in place.

    ``fan_in`` is everything but dim 0 (in_channels × kernel area), so a slice of new
    output filters is initialised exactly like a whole fresh layer of that width.
    """
    fan_in = math.prod(weight.shape[1:])
    return normal_(weight, math.sqrt(2.0 / fan_in), generator)


def normal_(tensor: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` (any view) with N(0, std²) draws from ``generator``, in place.

    Draws on the generator's device and copies when the two differ, so that a CPU
    generator seeds a CUDA model reproducibly.
    """
    with torch.no_grad():
        if generator is None or generator.device == tensor.device:
            return tensor.normal_(0.0, std, generator=generator)
        draw = torch.randn(tensor.shape, generator=generator, device=generator.device, dtype=tensor.dtype)
        return tensor.copy_(draw.mul_(std))


def initialize(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Kaiming weights, zero biases, BatchNorm at the identity (weight 1, bias 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            kaiming_normal_(m.weight, generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def on_device(device: torch.device | str | None) -> contextlib.AbstractContextManager[Any]:
    """Context that creates modules on ``device`` (the ambient default when None)."""
    return torch.device(device) if device is not None else contextlib.nullcontext()


def is_meta(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "meta"
