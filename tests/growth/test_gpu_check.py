"""bench/gpu_check.py: always runnable, and every check in it works (toy sizes, on the CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run the checks")
def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA device" in done.stdout
    assert not out.exists()


def test_smoke_run_on_the_cpu_passes_every_check(tmp_path: Path) -> None:
    """Every row of the table runs (the fused step through Triton's interpreter) and none fails."""
    pytest.importorskip("triton", reason="the fused rows need Triton (pip install -e '.[gpu]')")
    out = tmp_path / "rows.json"
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["check"]: row for row in report["rows"]}
    assert len(rows) == 7 and report["fused_available"] is True
    assert all(row["error"] is None for row in rows.values()), [r["error"] for r in rows.values()]
    step = rows["step vs float64 reference"]
    assert step["ok"] is True and step["detail"]["fused_max_rel_error"] <= 1e-5
    assert step["detail"]["foreach_max_rel_error"] <= 1e-5
    assert rows["widen VGG16, state kept"]["ok"] is True and not rows["widen VGG16, state kept"]["detail"]["problems"]
    assert rows["growth job end to end"]["ok"] is True
    assert "| check | figure | goal | pass | peak GPU memory |" in done.stdout
