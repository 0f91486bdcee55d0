"""ResNet-style networks of basic blocks, with a separate width per stage and per block.

Spec::

    {"family": "resnet", "in_channels": 3, "num_classes": 10, "stem": 16,
     "stages": [{"width": 16, "stride": 1, "blocks": [16, 16, 16]},
                {"width": 32, "stride": 2, "blocks": [32, 32, 32]}],
     "input_size": [32, 32]}

``blocks`` lists each basic block's inner width (conv1's output). A stage's
``stride`` defaults to 1 for the first stage and 2 after. The first block of every
stage has a 1×1 conv+BN projection shortcut, so a stage's width is independent of
the previous one. Growth units: ``stem``; ``stageN`` — the residual width, shared by
every block's conv2 and the projection because the residual adds couple them;
``stageN.blockM`` — block M's inner width (1-based names).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
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

_KEYS = ("family", "in_channels", "num_classes", "stem", "stages", "input_size")
_STAGE_KEYS = ("width", "stride", "blocks")
DEFAULT_INPUT_SIZE = [32, 32]


class ConvBN(nn.Module):
    """conv (no bias) → BatchNorm, without activation: a stem or a projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """conv3x3 → BN → ReLU → conv3x3 → BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, inner: int, out_channels: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, inner, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = ConvBN(in_channels, out_channels, 1, stride) if project else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class Stage(nn.Module):
    def __init__(self, in_channels: int, width: int, stride: int, inner_widths: list[int]) -> None:
        super().__init__()
        self.stride = stride
        self.blocks = nn.ModuleList(
            BasicBlock(in_channels if i == 0 else width, inner, width, stride if i == 0 else 1, project=i == 0)
            for i, inner in enumerate(inner_widths)
        )

    @property
    def width(self) -> int:
        return self.blocks[0].conv2.out_channels

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@register_family("resnet")
class ResNet(GrowableNet):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem: int,
        stages: list[dict[str, Any]],
        input_size: tuple[int, int] | list[int] = (32, 32),
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, int(input_size[0]), int(input_size[1]))
        self.stem = ConvBN(in_channels, stem, 3)
        channels = stem
        built = []
        for stage in stages:
            built.append(Stage(channels, stage["width"], stage["stride"], list(stage["blocks"])))
            channels = stage["width"]
        self.stages = nn.ModuleList(built)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict(fc=nn.Linear(channels, num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    # -- specs --------------------------------------------------------------------------

    @classmethod
    def validate_spec(cls, spec: Mapping[str, Any], path: str) -> dict[str, Any]:
        check.reject_unknown(spec, _KEYS, path)
        in_channels = positive_int(check.require(spec, "in_channels", path, "3"), f"{path}.in_channels")
        num_classes = positive_int(check.require(spec, "num_classes", path, "10"), f"{path}.num_classes")
        stem = positive_int(check.require(spec, "stem", path, "16"), f"{path}.stem")
        stages = check.require(spec, "stages", path, '[{"width": 16, "blocks": [16, 16]}]')
        if not isinstance(stages, list) or not stages:
            raise SpecError(
                f"{path}.stages", 'must be a non-empty list of stages, e.g. [{"width": 16, "blocks": [16]}]'
            )
        return {
            "family": cls.family,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "stem": stem,
            "stages": [_validate_stage(stage, i, f"{path}.stages[{i}]") for i, stage in enumerate(stages)],
            "input_size": input_size(spec.get("input_size", DEFAULT_INPUT_SIZE), f"{path}.input_size"),
        }

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        stage = {
            "type": "object",
            "required": ["width", "blocks"],
            "additionalProperties": False,
            "properties": {
                "width": {**POSITIVE_INT_SCHEMA, "description": "the stage's residual width (unit stageN)"},
                "stride": {"enum": [1, 2], "description": "1 for the first stage, 2 after, by default"},
                "blocks": {"type": "array", "minItems": 1, "items": POSITIVE_INT_SCHEMA,
                           "description": "inner width of each basic block (units stageN.blockM)"},
            },
        }
        return {
            "title": "ResNet",
            "description": "a conv3x3 stem, then stages of basic blocks (the first with a 1×1 projection), "
                           "global average pooling and the classifier",
            "type": "object",
            "required": ["family", "stem", "stages"],
            "additionalProperties": False,
            "properties": {
                "family": {"const": cls.family},
                "stem": {**POSITIVE_INT_SCHEMA, "description": "the stem's width (unit stem)"},
                "stages": {"type": "array", "minItems": 1, "items": stage},
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
    ) -> ResNet:
        with on_device(device):
            model = cls(
                spec["in_channels"], spec["num_classes"], spec["stem"], list(spec["stages"]), spec["input_size"]
            )
        if not is_meta(device):
            initialize(model, generator)
        return model

    def to_spec(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "in_channels": self.input_shape[0],
            "num_classes": self.classifier.fc.out_features,
            "stem": self.stem.conv.out_channels,
            "stages": [
                {"width": stage.width, "stride": stage.stride, "blocks": [b.conv1.out_channels for b in stage.blocks]}
                for stage in self.stages
            ],
            "input_size": list(self.input_shape[1:]),
        }

    # -- growth units -------------------------------------------------------------------

    def units(self) -> list[Unit]:
        stem = Unit("stem", residual=False, producers=[(self.stem.conv, self.stem.bn)], consumers=self._stage_inputs(0))
        units = [stem]
        for s, stage in enumerate(self.stages):
            blocks = list(stage.blocks)
            producers: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = [(b.conv2, b.bn2) for b in blocks]
            producers.append((blocks[0].shortcut.conv, blocks[0].shortcut.bn))
            # Every later block reads the stage's channels, and so does whatever follows the stage.
            consumers: list[nn.Conv2d | nn.Linear] = [b.conv1 for b in blocks[1:]]
            consumers += self._stage_inputs(s + 1) if s + 1 < len(self.stages) else [self.classifier.fc]
            units.append(Unit(f"stage{s + 1}", residual=True, producers=producers, consumers=consumers))
            units += [
                Unit(
                    f"stage{s + 1}.block{b + 1}",
                    residual=False,
                    producers=[(block.conv1, block.bn1)],
                    consumers=[block.conv2],
                )
                for b, block in enumerate(blocks)
            ]
        return units

    def _stage_inputs(self, stage_index: int) -> list[nn.Conv2d | nn.Linear]:
        first = self.stages[stage_index].blocks[0]
        return [first.conv1, first.shortcut.conv]

    # -- depth growth -------------------------------------------------------------------

    def append_block(self, stage_index: int, generator: torch.Generator | None = None) -> BasicBlock:
        """Append a Kaiming-initialised basic block to a stage; its inner width copies the last block's.

        The new block lives on the stage's device and dtype, in its memory format
        (channels_last or not). Optimizer bookkeeping is :func:`growth.surgery.add_block`'s job.
        """
        stage = self.stages[stage_index]
        reference = stage.blocks[-1].conv1.weight
        block = BasicBlock(stage.width, stage.blocks[-1].conv1.out_channels, stage.width, 1, project=False)
        channels_last = not reference.is_contiguous() and reference.is_contiguous(memory_format=torch.channels_last)
        block.to(device=reference.device, dtype=reference.dtype,
                 memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        initialize(block, generator)
        stage.blocks.append(block)
        return block


def _validate_stage(stage: Any, index: int, path: str) -> dict[str, Any]:
    stage = check.mapping(stage, path)
    check.reject_unknown(stage, _STAGE_KEYS, path)
    width = positive_int(check.require(stage, "width", path, "16"), f"{path}.width")
    stride = stage.get("stride", 1 if index == 0 else 2)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride not in (1, 2):
        raise SpecError(f"{path}.stride", f"must be 1 or 2, got {stride!r}")
    blocks = check.require(stage, "blocks", path, "[16, 16]")
    blocks = int_list(blocks, f"{path}.blocks", allow_empty=False, example="[16, 16]")
    return {"width": width, "stride": stride, "blocks": blocks}
