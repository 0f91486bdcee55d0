"""The shipped example through the real console script: `netgrow grow` then `netgrow compare`."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def netgrow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("netgrow") or str(Path(sys.executable).with_name("netgrow"))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_digits_vgg_grow_example_grows_two_units_and_reaches_95_percent(tmp_path):
    out = tmp_path / "grown.json"
    run = netgrow("grow", str(ROOT / "examples" / "digits-vgg-grow.json"), "--out", str(out), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    seed_widths = {f"conv{i + 1}": 8 for i in range(6)}
    grown = [u for u, w in result["final"]["widths"].items() if w > seed_widths[u]]
    assert len(grown) >= 2, result["final"]["widths"]
    assert result["final"]["test_accuracy"] >= 0.95
    assert {"method", "final", "history", "wall_seconds"} <= set(result)
    assert all({"epoch", "phase", "train_loss", "val_accuracy", "units"} <= set(r) for r in result["history"])
    assert "test accuracy" in run.stdout

    # The grown architecture seeds a new job as is.
    spec = json.loads((ROOT / "examples" / "smoke.json").read_text())
    spec["model"] = result["final"]["model"]
    spec["method"] = "dense"
    # The grown model records the image size it was grown at (16×16); it is trained on the same data.
    spec["data"] = json.loads((ROOT / "examples" / "digits-vgg-grow.json").read_text())["data"]
    (tmp_path / "regrow.json").write_text(json.dumps(spec))
    again = netgrow("grow", "regrow.json", "--out", "dense.json", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    dense = json.loads((tmp_path / "dense.json").read_text())
    assert dense["final"]["widths"] == result["final"]["widths"]

    table = netgrow("compare", str(out), str(tmp_path / "dense.json"), "--format", "csv", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "conv1" in table.stdout and "grown" in table.stdout and "dense" in table.stdout


def test_bad_spec_gets_a_one_line_error_naming_the_field(tmp_path):
    spec = json.loads((ROOT / "examples" / "smoke.json").read_text())
    spec["growth"]["threshold"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    run = netgrow("grow", "bad.json", cwd=tmp_path)
    assert run.returncode == 2
    assert "growth.threshold" in run.stderr and "Traceback" not in run.stderr
    missing = netgrow("grow", "nope.json", cwd=tmp_path)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
