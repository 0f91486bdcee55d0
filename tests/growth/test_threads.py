"""The CPU thread count is part of a run's record: a spec field, stored in checkpoints and results,
and a resumed run uses the count it started with, whatever its new process was set to."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import growth
from growth.errors import SpecError
from growth.spec import parse_spec


def spec(**train: Any) -> dict[str, Any]:
    return {"method": "grow", "seed": 1, "model": {"family": "vgg", "layers": [6, "M", 6], "classifier": []},
            "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 8, "samples": 200},
            "train": {"epochs": 3, "batch_size": 16, "lr": 0.05, **train}, "optimizer": {"nu": 1.0, "lam": 0.05},
            "growth": {"every": 1, "threshold": 0.5, "add": 2, "finetune_epochs": 0}}


@pytest.fixture
def process_threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def test_threads_is_a_spec_field_with_a_default_and_bounds() -> None:
    assert parse_spec(spec()).train.threads is None  # the process's own count, recorded when the run starts
    assert parse_spec(spec(threads=2)).to_dict()["train"]["threads"] == 2
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(SpecError) as caught:
            parse_spec(spec(threads=bad))
        assert caught.value.field == "train.threads"


def test_a_run_records_threads_device_and_dtype_and_leaves_the_process_count_alone(process_threads) -> None:
    process_threads(2)
    result = growth.run(spec(threads=1))
    assert result["environment"] == {"threads": 1, "device": "cpu", "dtype": "float32"}
    assert torch.get_num_threads() == 2
    assert growth.run(spec())["environment"]["threads"] == 2


def test_a_resumed_run_uses_the_thread_count_it_started_with(tmp_path: Path, process_threads) -> None:
    process_threads(2)
    straight = growth.run(spec(), checkpoint_dir=tmp_path / "a")
    earlier = sorted((tmp_path / "a").glob("epoch-*.pt"))[0]  # the second-to-last epoch's checkpoint
    assert torch.load(earlier, weights_only=True)["environment"]["threads"] == 2

    process_threads(1)  # the worker that resumes has one core
    resumed = growth.run(spec(), checkpoint_dir=tmp_path / "b", resume_from=earlier)
    assert resumed["environment"]["threads"] == 2 and torch.get_num_threads() == 1
    def timeless(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in history]

    assert timeless(resumed["history"]) == timeless(straight["history"])
    assert resumed["final"] == straight["final"]


def test_a_checkpoint_written_before_a_defaulted_field_existed_still_resumes(tmp_path: Path) -> None:
    """A rolling upgrade: the worker that resumes knows train.threads, the one that checkpointed did not.

    Found by bench/soak.py: workers restarted on newer code failed such jobs with "the checkpoint belongs
    to a different spec".
    """
    growth.run(spec(), checkpoint_dir=tmp_path / "a")
    earlier = sorted((tmp_path / "a").glob("epoch-*.pt"))[0]
    state = torch.load(earlier, weights_only=True)
    del state["spec"]["train"]["threads"]
    torch.save(state, earlier)
    old_spec = state["spec"]
    assert growth.run(old_spec, checkpoint_dir=tmp_path / "b", resume_from=earlier)["epochs"] == 3
    with pytest.raises(SpecError) as caught:  # a checkpoint of another spec is still refused
        growth.run({**old_spec, "seed": 2}, checkpoint_dir=tmp_path / "c", resume_from=earlier)
    assert caught.value.field == "resume_from"
