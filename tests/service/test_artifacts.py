"""Final weights files: the same bytes (and SHA-256) for the same tensors, and the same file mode as checkpoints."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import growth.checkpoint
from worker.store import artifacts

MODEL = {"family": "vgg", "in_channels": 1, "num_classes": 3, "layers": [4, "M", 4], "classifier": [],
         "batch_norm": True, "input_size": [8, 8]}


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    state = {"features.0.weight": torch.randn(4, 1, 3, 3, generator=generator),
             "features.0.bias": torch.randn(4, generator=generator), "head.weight": torch.randn(3, 4, generator=generator),
             "steps": torch.tensor(7)}
    path = tmp_path / "final.pt"
    torch.save(state, path)
    return path


def test_identical_tensors_give_identical_bytes(tmp_path: Path, state_file: Path) -> None:
    written = [artifacts.write_weights(state_file, tmp_path / f"w{i}.safetensors", dict(MODEL)) for i in range(12)]
    assert len({stored.sha256 for stored in written}) == 1
    assert len({stored.path.read_bytes() for stored in written}) == 1
    with safe_open(str(written[0].path), "pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["model"]) == MODEL and metadata["format"] == "netgrow"
    loaded, original = load_file(str(written[0].path)), torch.load(state_file, weights_only=True)
    assert loaded.keys() == original.keys() and all(loaded[k].equal(original[k]) for k in loaded)


def test_weights_get_the_same_mode_as_checkpoints(tmp_path: Path, state_file: Path) -> None:
    previous = os.umask(0o022)
    try:
        weights = artifacts.write_weights(state_file, tmp_path / "attempt-1" / "weights.safetensors", MODEL)
        checkpoint = growth.checkpoint.save(tmp_path / "attempt-1", 0, {"epoch": 1})
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(path.stat().st_mode) for path in (weights.path, checkpoint)}
    assert modes == {0o644}, [oct(mode) for mode in modes]
