"""Plain VGG-style stacks: conv3x3 → BN → ReLU per width, "M" for 2×2 max-pool.

Spec::

    {"family": "vgg", "in_channels": 3, "num_classes": 10,
     "layers": [64, 64, "M", 128, 128, "M"], "classifier": [], "batch_norm": true,
     "input_size": [32, 32]}

After the convolutions: global average pooling, the hidden ``classifier`` Linear+ReLU
layers, and the final ``classifier.fc``. Every conv is one growth unit, named
``conv1``, ``conv2``, … like the rows of the paper's Table 4.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from growth import validation as check
from growth.errors import SpecError
from growth.models.base import GrowableNet, Unit, initialize, is_meta, on_device
from growth.models.registry import (
    INPUT_OUTPUT_SCHEMA,
    POSITIVE_INT_SCHEMA,
    input_size,
    int_list,
    positive_int,
    register_family,
)

POOL = "M"
_KEYS = ("family", "in_channels", "num_classes", "layers", "classifier", "batch_norm", "input_size")
DEFAULT_INPUT_SIZE = [32, 32]


@register_family("vgg")
class VGG(GrowableNet):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        layers: list[int | str],
        classifier: list[int],
        batch_norm: bool = True,
        input_size: tuple[int, int] | list[int] = (32, 32),
    ) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.input_shape = (in_channels, int(input_size[0]), int(input_size[1]))
        self.features = nn.Sequential(_feature_layers(in_channels, layers, batch_norm))
        self.pool = nn.AdaptiveAvgPool2d(1)
        last_width = [w for w in layers if w != POOL][-1]
        self.classifier = nn.Sequential(_classifier_layers(int(last_width), classifier, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    # -- specs --------------------------------------------------------------------------

    @classmethod
    def validate_spec(cls, spec: Mapping[str, Any], path: str) -> dict[str, Any]:
        check.reject_unknown(spec, _KEYS, path)
        in_channels = positive_int(check.require(spec, "in_channels", path, "3"), f"{path}.in_channels")
        num_classes = positive_int(check.require(spec, "num_classes", path, "10"), f"{path}.num_classes")
        size = input_size(spec.get("input_size", DEFAULT_INPUT_SIZE), f"{path}.input_size")
        layers = _validate_layers(check.require(spec, "layers", path, '[64, 64, "M", 128]'), size, path)
        classifier = int_list(spec.get("classifier", []), f"{path}.classifier", allow_empty=True, example="[256]")
        batch_norm = check.boolean(spec.get("batch_norm", True), f"{path}.batch_norm")
        return {
            "family": cls.family,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "layers": layers,
            "classifier": classifier,
            "batch_norm": batch_norm,
            "input_size": size,
        }

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {
            "title": "VGG",
            "description": 'conv3x3 (+ BatchNorm) + ReLU per width, "M" a 2×2 max-pool, then global average '
                           "pooling, hidden linear layers and the classifier; units conv1, conv2, …",
            "type": "object",
            "required": ["family", "layers"],
            "additionalProperties": False,
            "properties": {
                "family": {"const": cls.family},
                "layers": {"type": "array", "minItems": 1, "description": 'conv widths and "M", e.g. [8, 8, "M", 8]',
                           "items": {"oneOf": [POSITIVE_INT_SCHEMA, {"const": POOL}]}},
                "classifier": {"type": "array", "items": POSITIVE_INT_SCHEMA,
                               "description": "hidden linear widths before the classifier (not growth units)"},
                "batch_norm": {"type": "boolean"},
                **INPUT_OUTPUT_SCHEMA,
            },
        }

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> VGG:
        with on_device(device):
            model = cls(
                spec["in_channels"],
                spec["num_classes"],
                list(spec["layers"]),
                list(spec["classifier"]),
                spec["batch_norm"],
                spec["input_size"],
            )
        if not is_meta(device):
            initialize(model, generator)
        return model

    def to_spec(self) -> dict[str, Any]:
        layers: list[int | str] = [
            m.out_channels if isinstance(m, nn.Conv2d) else POOL
            for m in self.features
            if isinstance(m, nn.Conv2d | nn.MaxPool2d)
        ]
        hidden = [
            m.out_features for name, m in self.classifier.named_children() if name.startswith("fc") and name != "fc"
        ]
        return {
            "family": self.family,
            "in_channels": self.input_shape[0],
            "num_classes": self.classifier.fc.out_features,
            "layers": layers,
            "classifier": hidden,
            "batch_norm": self.batch_norm,
            "input_size": list(self.input_shape[1:]),
        }

    # -- growth units -------------------------------------------------------------------

    def units(self) -> list[Unit]:
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        first_linear = next(m for m in self.classifier if isinstance(m, nn.Linear))
        units = []
        for i, conv in enumerate(convs, start=1):
            bn = getattr(self.features, f"bn{i}", None)
            consumer = convs[i] if i < len(convs) else first_linear
            units.append(Unit(name=f"conv{i}", residual=False, producers=[(conv, bn)], consumers=[consumer]))
        return units


def _validate_layers(layers: Any, size: list[int], path: str) -> list[int | str]:
    field = f"{path}.layers"
    example = '[64, 64, "M", 128, 128, "M"]'
    if not isinstance(layers, list) or not layers:
        raise SpecError(field, f"must be a non-empty list of conv widths and \"M\" (max-pool), e.g. {example}")
    height, width = size
    previous: int | str | None = None
    for i, item in enumerate(layers):
        where = f"{field}[{i}]"
        if item == POOL:
            if previous is None:
                raise SpecError(where, '"M" cannot come first: start with a conv width, e.g. [8, "M"]')
            if previous == POOL:
                raise SpecError(where, 'two "M" in a row pool twice with nothing between; remove one')
            height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise SpecError(
                    where,
                    f"this max-pool shrinks a {size[0]}x{size[1]} input below 1 pixel; "
                    "remove it or raise model.input_size",
                )
        elif isinstance(item, str):
            raise SpecError(where, f'must be a positive integer (conv width) or "M", got {item!r}')
        else:
            positive_int(item, where, 'a positive integer (conv width) or "M"')
        previous = item
    return list(layers)


def _feature_layers(in_channels: int, layers: list[int | str], batch_norm: bool) -> OrderedDict[str, nn.Module]:
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    conv_index = pool_index = 0
    channels = in_channels
    for item in layers:
        if item == POOL:
            pool_index += 1
            modules[f"pool{pool_index}"] = nn.MaxPool2d(2)
            continue
        width = int(item)
        conv_index += 1
        # BatchNorm's shift makes a conv bias redundant.
        modules[f"conv{conv_index}"] = nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            modules[f"bn{conv_index}"] = nn.BatchNorm2d(width)
        modules[f"relu{conv_index}"] = nn.ReLU()
        channels = width
    return modules


def _classifier_layers(in_features: int, hidden: list[int], num_classes: int) -> OrderedDict[str, nn.Module]:
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for i, width in enumerate(hidden, start=1):
        modules[f"fc{i}"] = nn.Linear(in_features, width)
        modules[f"relu{i}"] = nn.ReLU()
        in_features = width
    modules["fc"] = nn.Linear(in_features, num_classes)
    return modules
