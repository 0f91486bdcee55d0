"""bench/compare.py's reading of results: which epochs are growth checks, the targets, uniformity."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_compare"] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)


def unit(name: str, width: int, ratio: float, grew: int = 0) -> dict:
    return {"name": name, "width": width, "selected": round(ratio * width), "ratio": ratio, "grew": grew}


def grown_result(params: int, accuracy: float, seconds: float) -> dict:
    """Growth every 2 epochs for 5 growth epochs, then one fine-tuning epoch."""
    rows = []
    for epoch, (phase, units) in enumerate([
        ("grow", [unit("conv1", 8, 0.5), unit("conv2", 8, 0.5)]),
        ("grow", [unit("conv1", 8, 1.0, grew=8), unit("conv2", 8, 0.75)]),          # check: conv1 grows
        ("grow", [unit("conv1", 16, 0.5), unit("conv2", 8, 0.875)]),
        ("grow", [unit("conv1", 16, 1.0, grew=8), unit("conv2", 8, 1.0, grew=8)]),  # check: both grow
        ("grow", [unit("conv1", 24, 0.6), unit("conv2", 16, 0.5)]),
        ("finetune", [unit("conv1", 24, 1.0), unit("conv2", 16, 1.0)]),             # odd epoch, not a check
    ]):
        rows.append({"epoch": epoch, "phase": phase, "units": units, "val_accuracy": 0.5})
    return {"method": "grow", "spec": {"growth": {"every": 2, "stop": "no_trigger"}}, "history": rows,
            "final": {"params": params, "macs": 1, "test_accuracy": accuracy, "widths": {"conv1": 24, "conv2": 16}},
            "wall_seconds": seconds}


def flat_result(method: str, params: int, accuracy: float, seconds: float) -> dict:
    return {"method": method, "final": {"params": params, "macs": 1, "test_accuracy": accuracy, "widths": {}},
            "wall_seconds": seconds, "history": []}


def test_growth_checks_are_the_every_jth_growth_epochs_only():
    checks = bench.growth_checks(grown_result(1, 0.9, 1))
    assert [row["epoch"] for row in checks] == [1, 3]


def test_the_timeline_shows_widths_after_each_epochs_growth():
    lines = bench.width_timeline(grown_result(1, 0.9, 1)).splitlines()
    assert lines[0].startswith("| Epoch | Phase | conv1 | conv2 |")
    assert lines[2 + 1] == "| 1 | grow | 16 | 8 | 50.00% |"
    assert lines[2 + 3] == "| 3 | grow | 24 | 16 | 50.00% |"


def test_uniformity_counts_lockstep_and_partial_checks():
    results = {"grow (VGG)": {0: grown_result(1, 0.9, 1)}}
    [line] = bench.uniformity(results, "grow (VGG)", [0])
    assert "units widened per check [1, 2] of 2" in line
    assert "1 of 2 checks widened every unit, 1 widened only some" in line
    assert "2 distinct" in line


@pytest.mark.parametrize(("grown_params", "grown_accuracy", "expected"), [
    (500, 0.900, "**met**"),    # half the params, same accuracy
    (501, 0.900, "**missed**"),  # just over half
    (400, 0.8971, "**met**"),    # 0.29 pt worse: inside the allowance
    (400, 0.8969, "**missed**"),  # 0.31 pt worse
])
def test_the_params_target_is_half_the_l1_pruned_params_within_0_3_points(grown_params, grown_accuracy, expected):
    results = {"grow (VGG)": {0: grown_result(grown_params, grown_accuracy, 10)},
               "l1_prune": {0: flat_result("l1_prune", 1000, 0.9, 100)}}
    line = bench.targets(results, [0])[0]
    assert line.endswith(expected + "."), line


def test_the_wall_time_target_compares_against_the_whole_l1_pipeline():
    results = {"grow (VGG)": {0: grown_result(500, 0.9, 50)},
               "l1_prune": {0: flat_result("l1_prune", 1000, 0.9, 100)}}
    wall = bench.targets(results, [0])[-1]
    assert "50 s vs. 100 s (0.50×) — **met**" in wall
    results["grow (VGG)"][0]["wall_seconds"] = 51
    assert bench.targets(results, [0])[-1].endswith("**missed**.")


def test_a_run_with_overrides_changes_only_those_fields():
    run = bench.Run("fashion-vgg-grow.json", {"growth": {"stop": "plateau"}})
    spec = run.spec(seed=2)
    assert spec["seed"] == 2 and spec["growth"]["stop"] == "plateau"
    assert spec["growth"]["every"] == bench.Run("fashion-vgg-grow.json").spec(2)["growth"]["every"]
    assert run.result_name() == "fashion-vgg-grow-plateau.result.json"


@pytest.mark.parametrize("dataset", sorted(bench.BENCHMARKS))
def test_every_run_of_a_benchmark_is_a_shipped_example_of_a_registered_method(dataset):
    from growth.methods import METHODS

    benchmark = bench.BENCHMARKS[dataset]
    for label, run in {**benchmark.runs, **benchmark.optional}.items():
        spec = run.spec(seed=0)  # reads examples/<file>; a missing one raises here
        assert spec["method"] in METHODS, label
        assert spec["data"]["name"] == dataset, label


def test_a_partial_run_writes_its_own_section_and_a_full_run_replaces_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\n## Growth vs. baselines on X\n\nold full\n\n"
                                            "## Growth vs. baselines on X: only a\n\nold partial\n\n## Other\n\nkept\n")
    bench.write_section("## Growth vs. baselines on X\n\nnew full\n", "## Growth vs. baselines on X")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "new full" in text and "old full" not in text
    assert "old partial" in text and "kept" in text and text.count("new full") == 1
