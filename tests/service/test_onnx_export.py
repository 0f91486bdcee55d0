"""ONNX export of grown networks, run with onnxruntime on real test images: the same logits as PyTorch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import growth
from growth.data import load_dataset
from growth.models import build_model
from worker.store.onnx_export import INPUT_NAME, OUTPUT_NAME, deployable, export_onnx

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is part of dev")

GROW: dict[str, Any] = {
    "method": "grow",
    "seed": 0,
    "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.2},
    "train": {"epochs": 4, "batch_size": 128, "lr": 0.1},
    "optimizer": {"kappa": 1.0, "nu": 1.0, "lam": 0.5},
    "growth": {"every": 2, "threshold": 0.3, "add": 4, "max_width": 64, "finetune_epochs": 1},
}
VGG = {"family": "vgg", "layers": [4, "M", 4], "classifier": []}
RESNET = {"family": "resnet", "stem": 4, "stages": [{"width": 4, "blocks": [4]}, {"width": 4, "stride": 2, "blocks": [4]}]}


@pytest.mark.parametrize("model", [VGG, RESNET], ids=["vgg", "resnet"])
def test_onnx_of_a_grown_network_gives_pytorchs_logits_on_real_images(tmp_path: Path, model: dict) -> None:
    torch.set_num_threads(1)
    result = growth.run({**GROW, "model": model}, checkpoint_dir=tmp_path / "run")
    assert any(change["change"] == "widen" for change in result["events"]), "the seed did not grow"
    grown_spec = result["final"]["model"]
    state = torch.load(result["weights"], map_location="cpu", weights_only=True)
    splits = load_dataset(result["spec"]["data"], seed=result["spec"]["seed"])

    path = export_onnx(deployable(grown_spec, state, splits.mean, splits.std), splits.input_shape,
                       tmp_path / "model.onnx")

    # What PyTorch computes on the normalised test split, with a model built apart from the exporter's.
    reference = build_model(grown_spec)
    reference.load_state_dict(state)
    reference.eval()
    test_x, _ = splits.test
    with torch.no_grad():
        expected = reference(test_x).numpy()

    # What a user feeds the ONNX file: the same test images as plain pixels in [0, 1].
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    pixels = (test_x * std + mean).numpy().astype(np.float32)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
    assert logits.shape == (len(pixels), 10)
    assert np.max(np.abs(logits - expected)) < 1e-4
    # Any batch size: one image alone gives its row of the batch.
    (single,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels[3:4]})
    assert np.max(np.abs(single[0] - expected[3])) < 1e-4
    assert (logits.argmax(1) == expected.argmax(1)).all()
