"""The `netgrow` command line: server-side commands, the HTTP client commands, and the demo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from api_support import REPO, LiveApi, dense_spec, smoke_spec

pytestmark = pytest.mark.service


def netgrow(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.cli ...` (what the `netgrow` console script runs) in a fresh process."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env})


def test_keys_create_migrates_an_embedded_database_and_prints_the_key_last(tmp_path: Path) -> None:
    from worker.store.migrate import is_up_to_date
    from worker.store.session import session_scope
    from worker.store.keys import authenticate

    database_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {"NETGROW_DATABASE_URL": database_url, "NETGROW_BROKER_URL": "", "NETGROW_ARTIFACT_DIR": str(tmp_path)}
    created = netgrow("keys", "create", "erin", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert is_up_to_date(database_url)
    with session_scope(database_url) as session:
        assert authenticate(session, key) == "erin"

    revoked = netgrow("keys", "revoke", key[:12], env=env)
    assert revoked.returncode == 0 and "revoked 1 key" in revoked.stdout
    with session_scope(database_url) as session:
        assert authenticate(session, key) is None
    assert netgrow("keys", "create", " ", env=env).returncode == 2


def test_migrate_and_check(tmp_path: Path, fresh_pg_url: str) -> None:
    from worker.store.migrate import is_up_to_date

    database_url = f"sqlite:///{tmp_path / 'new.db'}"
    migrated = netgrow("migrate", env={"NETGROW_DATABASE_URL": database_url, "NETGROW_BROKER_URL": ""})
    assert migrated.returncode == 0, migrated.stderr
    assert is_up_to_date(database_url)
    healthy = netgrow("check", "--database", "--broker",
                      env={"NETGROW_DATABASE_URL": fresh_pg_url, "NETGROW_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert healthy.returncode == 0 and healthy.stdout.split() == ["database:", "ok", "broker:", "ok"]
    broken = netgrow("check", "--broker",
                     env={"NETGROW_DATABASE_URL": database_url, "NETGROW_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert broken.returncode == 1 and broken.stdout.startswith("broker: ") and "broker: ok" not in broken.stdout


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_client_commands_against_a_live_server(embedded_api: LiveApi, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    key = embedded_api.key("frank")
    monkeypatch.setenv("NETGROW_SERVER", embedded_api.url)
    monkeypatch.setenv("NETGROW_API_KEY", key)
    spec_file = tmp_path / "smoke.json"
    spec_file.write_text(json.dumps(smoke_spec()))
    dense_file = tmp_path / "dense.json"
    dense_file.write_text(json.dumps(dense_spec()))

    # argparse reads the environment when the parser is built, i.e. at each main() call.
    code, out, _ = run_cli(capsys, "submit", str(spec_file), "--idempotency-key", "cli-1")
    assert code == 0
    job_id = out.strip().splitlines()[-1]
    code, out, err = run_cli(capsys, "watch", job_id)
    assert code == 0, err
    assert f"job {job_id}: grow succeeded" in out and "epoch" in err  # the progress bar is on stderr
    code, again, _ = run_cli(capsys, "submit", str(spec_file), "--idempotency-key", "cli-1")
    assert again.strip().splitlines()[-1] == job_id

    code, out, _ = run_cli(capsys, "status", job_id)
    assert code == 0 and "succeeded" in out and "widths: conv1=" in out
    code, out, _ = run_cli(capsys, "history", job_id, "--unit", "conv1", "--to-epoch", "1")
    lines = out.strip().splitlines()
    assert lines[0] == "| epoch | phase | loss | val acc | params | conv1 |" and len(lines) == 4

    code, out, _ = run_cli(capsys, "submit", str(dense_file), "--watch")
    assert code == 0 and "dense succeeded" in out
    dense_id = json.loads(embedded_api.client(key).get("/v1/jobs", params={"method": "dense"}).text)["items"][0]["id"]
    code, out, _ = run_cli(capsys, "compare", job_id, dense_id)
    assert code == 0 and out.splitlines()[0] == f"| Layer | grow {job_id[:8]} | dense {dense_id[:8]} |"
    code, out, _ = run_cli(capsys, "compare", job_id, dense_id, "--format", "csv")
    assert out.splitlines()[0] == f"row,grow {job_id[:8]},dense {dense_id[:8]}"

    # Errors are one line on stderr and a non-zero exit, never a traceback.
    code, _, err = run_cli(capsys, "status", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "HTTP 404" in err
    code, _, err = run_cli(capsys, "status", job_id, "--key", "ng_wrong")
    assert code == 1 and "HTTP 401" in err and "NETGROW_API_KEY" in err
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(json.dumps(smoke_spec(model={"family": "vgg", "layers": [0]})))
    code, _, err = run_cli(capsys, "submit", str(bad_spec))
    assert code == 1 and "HTTP 422: model.layers[0]: " in err
    code, _, err = run_cli(capsys, "compare", str(spec_file), job_id)
    assert code == 2 and "not both" in err


def _result(method: str, widths: dict[str, int], params: int) -> dict[str, Any]:
    return {"method": method, "final": {"widths": widths, "params": params, "macs": 10 * params,
                                        "test_accuracy": 0.9}, "epochs": 3, "wall_seconds": 1.5}


def test_compare_on_result_files_runs_locally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grown, dense = tmp_path / "grown.json", tmp_path / "dense.json"
    grown.write_text(json.dumps(_result("grow", {"conv1": 24, "conv2": 16}, 1000)))
    dense.write_text(json.dumps(_result("dense", {"conv1": 64, "conv2": 64}, 8000)))
    code, out, _ = run_cli(capsys, "compare", str(grown), str(dense), "--server", "http://127.0.0.1:1")
    assert code == 0
    assert out.splitlines()[:4] == ["| Layer | grown | dense |", "|---|---:|---:|", "| conv1 | 24 | 64 |",
                                    "| conv2 | 16 | 64 |"]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    grow_file, dense_file = tmp_path / "grow.json", tmp_path / "dense.json"
    grow_file.write_text(json.dumps(smoke_spec()))
    dense_file.write_text(json.dumps(dense_spec()))
    demo = netgrow("demo", "--grow-spec", str(grow_file), "--dense-spec", str(dense_file),
                   "--data-dir", str(tmp_path / "data"), "--quiet", env={})
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "grown architecture (conv1=" in demo.stdout
    model = json.loads(demo.stdout.split("usable as the `model` of a new job:\n")[1].splitlines()[0])
    assert model["family"] == "vgg"
    assert "| Layer | dense " in demo.stdout and "| Run | Method | Params |" in demo.stdout
    assert (tmp_path / "data" / "netgrow.db").is_file()
    # It ends with the pictures of the run and the dashboard's address.
    pictures = tmp_path / "data" / "pictures"
    assert f"pictures of the run in {pictures}:" in demo.stdout
    assert sorted(path.name for path in pictures.iterdir()) == sorted(
        f"{name}.{fmt}" for name in ("grow-timeline", "grow-heatmap", "grow-curves", "comparison")
        for fmt in ("svg", "png"))
    timeline = (pictures / "grow-timeline.svg").read_text()
    assert all(f'id="width-{unit}"' in timeline for unit in model_units(model))
    assert "dense" in (pictures / "comparison.svg").read_text()
    dashboard = [line for line in demo.stdout.splitlines() if line.startswith("dashboard: ")]
    assert len(dashboard) == 1 and "/ui/" in dashboard[0] and "(API key: ng_" in dashboard[0]


def model_units(model: dict[str, Any]) -> list[str]:
    return [f"conv{i + 1}" for i in range(sum(isinstance(width, int) for width in model["layers"]))]
