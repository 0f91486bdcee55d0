"""A grown network as an ONNX file that runs without netgrow: images in [0, 1] in, logits out.

The graph starts with the job's own normalisation, ``(images - mean) / std``
per channel with the training split's statistics, so a user feeds plain
pixels scaled to [0, 1]; then the network in eval mode (batch norm uses its
running statistics). One input and one output, both float32:

    images   N×C×H×W in [0, 1], H×W the job's input size; N may be any batch size
    logits   N×K, one score per class (softmax for probabilities)

The export uses ``torch.onnx.export(..., dynamo=True)`` (the exporter torch
defaults to since 2.9; it needs the ``onnx`` and ``onnxscript`` packages, in
netgrow's ``onnx`` extra), and is written to a temporary name and renamed so
that a reader never sees half a file.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
OPSET_VERSION = 18
ONNX_EXTRA_HINT = "install netgrow's onnx extra (pip install 'netgrow[onnx]')"


class ExportUnavailable(RuntimeError):
    """The packages the exporter needs are not installed on this machine."""


class Deployable(nn.Module):
    """``model((images - mean) / std)``: the network with its input normalisation in front."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std {len(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.model((images - self.mean) / self.std)


def deployable(model_spec: Mapping[str, Any], state_dict: Mapping[str, Tensor], mean: Sequence[float],
               std: Sequence[float]) -> Deployable:
    """The network of ``model_spec`` with ``state_dict`` loaded, in eval mode on the CPU, normalisation in front."""
    from growth.models import build_model

    model = build_model(dict(model_spec), device="cpu")
    model.load_state_dict(dict(state_dict))
    channels = model.input_shape[0]
    if len(mean) != channels:
        raise ValueError(f"the normalisation has {len(mean)} channels but the model takes {channels}")
    return Deployable(model, mean, std).eval()


def export_onnx(module: Deployable, input_shape: Sequence[int], destination: Path) -> Path:
    """Write ``module`` as ONNX to ``destination`` (atomically); ``input_shape`` is (C, H, W).

    The batch dimension is dynamic. Raises ``ExportUnavailable`` when ``onnx`` or
    ``onnxscript`` is missing.
    """
    try:
        import onnx  # noqa: F401  (the exporter imports both; fail with a clear message first)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportUnavailable(f"ONNX export needs the onnx and onnxscript packages: {ONNX_EXTRA_HINT}") from exc

    channels, height, width = (int(d) for d in input_shape)
    # Two samples in the example: a batch of one would let the exporter specialise the batch size to 1.
    example = torch.rand(2, channels, height, width)
    batch = torch.export.Dim("batch", min=1)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module.eval(),
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"images": {0: batch}},
                opset_version=OPSET_VERSION,
                external_data=False,
                verbose=False,
            )
        program.save(str(temporary))
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


class NotExportable(ValueError):
    """A job whose stored weights lack what the export needs (the normalisation of older runs)."""


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def export_weights_file(weights: Path, destination: Path, preprocessing: Mapping[str, Any] | None = None) -> Path:
    """Export a netgrow safetensors file (model spec and normalisation in its metadata) to ONNX at ``destination``.

    Done once: an existing ``destination`` is returned as it is, and concurrent
    requests for the same file in this process wait for one export.
    ``preprocessing`` (``result["final"]["preprocessing"]``) stands in for
    weights files written before their metadata held it.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    destination = Path(destination)
    with _locks_guard:
        lock = _locks.setdefault(destination, threading.Lock())
    with lock:
        if destination.is_file():
            return destination
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "preprocessing" in metadata:
            preprocessing = json.loads(metadata["preprocessing"])
        if preprocessing is None:
            raise NotExportable("the weights carry no input normalisation (the job ran before netgrow recorded "
                                "it): run the job again to export it")
        module = deployable(json.loads(metadata["model"]), load_file(str(weights)), preprocessing["mean"],
                            preprocessing["std"])
        return export_onnx(module, preprocessing["input_shape"], destination)
