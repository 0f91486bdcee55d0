"""N workers on N GPUs: docker-compose.yml plus the override deploy/gpu_workers.py writes.

Docker cannot run here, so the test parses the files as Compose would read them
(the base file and the generated override, services merged by name) and checks
the invariants a GPU host relies on.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "gpu_workers.py"


def _flag(command: list[str], name: str) -> str | None:
    """The value of ``--name=value`` in a command list (the form the compose file uses)."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) <= 1, f"--{name} given twice in {command}"
    return values[0] if values else None


def _generated_override(gpus: int) -> str:
    done = subprocess.run([sys.executable, str(GENERATOR), str(gpus)], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout


def _merged(gpus: int) -> dict[str, Any]:
    """docker-compose.yml with the generated override applied (the override only adds services)."""
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    extra = yaml.safe_load(_generated_override(gpus))
    assert set(extra) == {"services"}
    assert not set(extra["services"] or {}) & set(base["services"]), "the override must not redefine a service"
    base["services"].update(extra["services"] or {})
    return base


def _workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items()
            if s.get("command", [None])[0] == "celery" and "worker" in s["command"]}


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_every_worker_owns_one_distinct_gpu_and_runs_one_job_at_a_time(gpus: int) -> None:
    compose = _merged(gpus)
    workers = _workers(compose)
    assert sorted(workers) == ["worker"] + [f"worker-gpu{i}" for i in range(1, gpus)]
    gpu_of: dict[str, str] = {}
    hostnames = set()
    for name, worker in workers.items():
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name} reserves {devices}"
        (device,) = devices
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert len(device["device_ids"]) == 1 and "count" not in device, f"{name} must be pinned to one GPU"
        gpu_of[name] = device["device_ids"][0]
        command = worker["command"]
        assert command[:3] == ["celery", "--app=worker.runners.celery_app", "worker"]
        assert _flag(command, "pool") == "solo", f"{name}: CUDA needs the solo pool (no fork)"
        assert _flag(command, "concurrency") == "1"
        assert _flag(command, "prefetch-multiplier") == "1", f"{name} must not reserve a second job"
        hostname = _flag(command, "hostname")
        assert hostname == f"gpu{gpu_of[name]}@%h", f"{name}'s Celery hostname names its GPU"
        hostnames.add(hostname)
        # no environment override that would point a worker at another GPU
        assert "CUDA_VISIBLE_DEVICES" not in worker["environment"]
    assert sorted(gpu_of.values(), key=int) == [str(i) for i in range(gpus)], "GPUs 0..N-1, each once"
    assert len(hostnames) == gpus


@pytest.mark.parametrize("gpus", [2, 4])
def test_every_worker_waits_for_the_migration_and_has_a_healthcheck(gpus: int) -> None:
    compose = _merged(gpus)
    base = compose["services"]["worker"]
    for name, worker in _workers(compose).items():
        depends = worker["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        check = worker["healthcheck"]
        assert check["test"] == ["CMD", "netgrow", "check", "--broker", "--database"], name
        assert check["retries"] >= 1 and check["interval"] and check["timeout"]
        # Same database, broker, artifact store, datasets and shutdown grace as GPU 0's worker.
        for key in ("environment", "volumes", "image", "stop_grace_period", "restart"):
            assert worker[key] == base[key], f"{name}.{key} differs from worker's"
    # The migration itself is one-shot and waits for the database.
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["netgrow", "migrate"] and migrate["restart"] == "no"


def test_celery_app_prefetches_one_job_too() -> None:
    """The command line says prefetch 1; the app's own configuration must agree."""
    from worker.runners.celery_app import create_app
    from worker.store.settings import Settings

    app = create_app(Settings(broker_url="redis://127.0.0.1:6379/15"))
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is True


def test_worker_command_parses_with_celery() -> None:
    """Every flag of the worker command is one the installed Celery accepts."""
    compose = _merged(2)
    command = compose["services"]["worker-gpu1"]["command"]
    done = subprocess.run(
        [sys.executable, "-m", "celery", *command[1:], "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "NETGROW_BROKER_URL": "redis://127.0.0.1:6379/15"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for option in ("--pool", "--concurrency", "--prefetch-multiplier", "--hostname"):
        assert option in done.stdout


def test_one_gpu_needs_no_extra_service_and_zero_gpus_is_refused() -> None:
    assert yaml.safe_load(_generated_override(1)) == {"services": {}}
    done = subprocess.run([sys.executable, str(GENERATOR), "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "at least 1" in done.stderr
