"""Parameter and multiply–accumulate counts: the one counter every report uses.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` on a batch-1 forward of a
meta-device copy of the architecture (shapes only: no memory, no arithmetic, and the
live model's BatchNorm statistics are never touched). FlopCounterMode counts the
matrix products — convolutions and linear layers — at 2 FLOPs per multiply–add, so
MACs = FLOPs / 2; BatchNorm, activations, pooling and residual adds are not counted.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from growth.models import GrowableNet, build_model, validate_model_spec


class Counts(NamedTuple):
    params: int  # trainable parameters
    macs: int  # multiply–accumulates of one image's forward pass


def count(model_or_spec: GrowableNet | Mapping[str, Any], input_shape: Sequence[int] | None = None) -> Counts:
    """Count a live model or a model spec for one input of ``input_shape`` (C, H, W).

    ``input_shape`` defaults to the one the model was built for. Counting a spec, or
    counting a model (through its ``to_spec()``), builds on the meta device once per
    distinct architecture and input shape and caches the result.
    """
    if isinstance(model_or_spec, GrowableNet):
        spec = model_or_spec.to_spec()
        params = _trainable(model_or_spec)
    else:
        spec = validate_model_spec(model_or_spec)
        params = None
    key = json.dumps(spec, sort_keys=True)
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
    spec_params, macs = _count_spec(key, shape)
    return Counts(params=spec_params if params is None else params, macs=macs)


@lru_cache(maxsize=512)
def _count_spec(spec_json: str, input_shape: tuple[int, ...] | None) -> tuple[int, int]:
    model = build_model(json.loads(spec_json), device="meta")
    shape = input_shape if input_shape is not None else model.input_shape
    return _trainable(model), count_macs(model, shape)


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of ``module`` on one input of ``input_shape`` (C, H, W); runs a batch-1 forward.

    The forward runs on a tensor on the module's device, in eval mode so that a
    live model's BatchNorm statistics stay as they were.
    """
    reference = next(module.parameters())
    x = torch.zeros((1, *input_shape), device=reference.device, dtype=reference.dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return counter.get_total_flops() // 2


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
