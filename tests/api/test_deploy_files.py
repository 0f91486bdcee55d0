"""The deployment files say what docs/deploy.md promises (Docker cannot run here, so check the structure)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("api", "worker", "postgres", "redis")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_five_services(compose: dict[str, Any]) -> None:
    assert {"api", "worker", "postgres", "redis", "migrate"} <= set(compose["services"])


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_healthchecks(compose: dict[str, Any], service: str) -> None:
    check = compose["services"][service]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert check["retries"] >= 1


@pytest.mark.parametrize("service", ("api", "worker"))
def test_api_and_worker_wait_for_a_successful_migration(compose: dict[str, Any], service: str) -> None:
    depends = compose["services"][service]["depends_on"]
    assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_migrate_is_one_shot_and_runs_the_migrations(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["netgrow", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert "healthcheck" not in migrate
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_owns_one_gpu_and_runs_one_job_at_a_time(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0"]}]
    command = worker["command"]
    assert command[:2] == ["celery", "--app=worker.runners.celery_app"]
    assert "--pool=solo" in command and "--concurrency=1" in command


def test_services_share_one_database_broker_and_artifact_store(compose: dict[str, Any]) -> None:
    api, worker, migrate = (compose["services"][name] for name in ("api", "worker", "migrate"))
    for key in ("NETGROW_DATABASE_URL", "NETGROW_BROKER_URL", "NETGROW_ARTIFACT_DIR", "NETGROW_DATA_DIR"):
        assert api["environment"][key] == worker["environment"][key] == migrate["environment"][key]
    assert "postgresql+psycopg://" in api["environment"]["NETGROW_DATABASE_URL"]
    assert "redis://redis:6379" in api["environment"]["NETGROW_BROKER_URL"]
    artifact_dir = api["environment"]["NETGROW_ARTIFACT_DIR"]
    assert f"artifacts:{artifact_dir}" in api["volumes"] and f"artifacts:{artifact_dir}" in worker["volumes"]
    # The API checks that a job's dataset folder exists and stores uploaded datasets there; workers only read.
    data_dir = api["environment"]["NETGROW_DATA_DIR"]
    assert f"datasets:{data_dir}" in api["volumes"] and f"datasets:{data_dir}:ro" in worker["volumes"]
    assert {"pgdata", "redisdata", "artifacts", "datasets"} <= set(compose["volumes"])


def test_api_serves_without_running_migrations_itself(compose: dict[str, Any]) -> None:
    command = compose["services"]["api"]["command"]
    assert command[:2] == ["netgrow", "serve"] and "--no-migrate" in command
    assert "0.0.0.0" in command
    assert "/readyz" in " ".join(compose["services"]["api"]["healthcheck"]["test"])


def test_compose_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    from app.cli import build_parser

    parser = build_parser()
    for name in ("api", "migrate"):
        parser.parse_args(compose["services"][name]["command"][1:])
    parser.parse_args(compose["services"]["worker"]["healthcheck"]["test"][2:])


def test_dockerfile_uses_a_cuda_pytorch_base_and_installs_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", base.group(1))
    assert "pip install" in dockerfile and "import torch, torchvision" in dockerfile
    for package in ("growth", "worker", "app", "migrations"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert re.search(r"^USER netgrow", dockerfile, re.MULTILINE)
    # The compose deployment runs fashion_mnist jobs without data.root: the image has the packaged files.
    assert re.search(r"apt-get install -y (--no-install-recommends )?dataset-fashion-mnist", dockerfile)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "netgrow-data", "*.db"):
        assert entry in ignored
