"""Submit over HTTP → a worker grows the network → history, architecture, weights and comparison are served.

The same scenario runs in both deployment shapes: embedded (SQLite, jobs in the
server's process) and distributed (PostgreSQL, Redis and a real Celery worker
process).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors import safe_open

from api_support import LiveApi, dense_spec, read_events, smoke_spec, wait_finished
from tests.dataset_files import write_tiny_mnist

pytestmark = pytest.mark.service


@pytest.fixture(params=["embedded", "celery"])
def api(request: pytest.FixtureRequest) -> LiveApi:
    return request.getfixturevalue(f"{request.param}_api")


def test_a_job_runs_end_to_end(api: LiveApi) -> None:
    client = api.user("alice")
    submitted = client.post("/v1/jobs", json=smoke_spec())
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/v1/jobs/{job_id}"
    assert submitted.json()["links"]["events"] == f"/v1/jobs/{job_id}/events"

    # The live stream: queued → running → one event per epoch (architecture changes in between) → succeeded.
    messages = read_events(client, job_id)
    kinds = [m.event for m in messages]
    states = [m.json()["status"] for m in messages if m.event == "state"]
    assert states == ["queued", "running", "succeeded"]
    assert kinds[0] == "state" and kinds[-1] == "state"
    ids = [int(m.id) for m in messages if m.id is not None]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    epoch_events = [m.json() for m in messages if m.event == "epoch"]
    assert [e["epoch"] for e in epoch_events] == list(range(len(epoch_events)))
    assert "checkpoint" not in epoch_events[0]  # server paths stay on the server

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["error"] is None
    assert job["progress"]["epoch"] == job["progress"]["total"] == len(epoch_events)
    assert job["progress"]["fraction"] == 1.0
    assert job["metrics"]["params"] == epoch_events[-1]["params"]
    assert 0.0 <= job["metrics"]["test_accuracy"] <= 1.0
    assert job["current_widths"] == {u["name"]: u["width"] for u in epoch_events[-1]["units"]}
    assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]

    # The history has what the stream had, epoch by epoch and unit by unit.
    history = client.get(f"/v1/jobs/{job_id}/history").json()
    assert history["status"] == "succeeded"
    assert [(e["epoch"], e["phase"], e["params"]) for e in history["epochs"]] == \
        [(e["epoch"], e["phase"], e["params"]) for e in epoch_events]
    assert [e["units"] for e in history["epochs"]] == [e["units"] for e in epoch_events]
    grew = [u for e in history["epochs"] for u in e["units"] if u["grew"] > 0]
    assert grew, "the smoke spec grows at least one layer"

    conv2 = client.get(f"/v1/jobs/{job_id}/history", params={"unit": "conv2", "from_epoch": 1, "to_epoch": 3})
    assert [e["epoch"] for e in conv2.json()["epochs"]] == [1, 2, 3]
    assert all([u["name"] for u in e["units"]] == ["conv2"] for e in conv2.json()["epochs"])

    # The grown architecture is a valid model for a new job, and the weights fit it.
    architecture = client.get(f"/v1/jobs/{job_id}/architecture").json()
    assert architecture["final"] is True
    widths = [w for w in architecture["model"]["layers"] if isinstance(w, int)]
    assert widths == list(job["current_widths"].values())
    _check_weights(client, job_id, architecture["model"])

    baseline = client.post("/v1/jobs", json=dense_spec() | {"model": architecture["model"]})
    assert baseline.status_code == 201, baseline.text
    baseline_job = wait_finished(client, baseline.json()["id"])
    assert baseline_job["status"] == "succeeded"
    assert baseline_job["current_widths"] == job["current_widths"]

    # The comparison of the two finished jobs (Table 4 widths and Table 5 params).
    ids = f"{job_id},{baseline_job['id']}"
    table = client.get("/v1/compare", params={"ids": ids}).json()
    assert table["job_ids"] == [job_id, baseline_job["id"]]
    assert table["table4"]["columns"] == [f"grow {job_id[:8]}", f"dense {baseline_job['id'][:8]}"]
    rows = {row["name"]: row["values"] for row in table["table4"]["rows"]}
    for unit, width in job["current_widths"].items():
        assert rows[unit] == [width, width]
    assert rows["Params"] == [job["metrics"]["params"], baseline_job["metrics"]["params"]]
    assert [r["method"] for r in table["table5"]] == ["grow", "dense"]
    assert table["table5"][0]["relative_params"] == 1.0

    markdown = client.get("/v1/compare", params={"ids": ids, "format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert f"| grow {job_id[:8]} |" in markdown.text.splitlines()[0]
    csv_rows = list(csv.reader(io.StringIO(client.get("/v1/compare", params={"ids": ids, "format": "csv"}).text)))
    assert csv_rows[0] == ["row", *table["table4"]["columns"]]
    assert [r[0] for r in csv_rows[1:]] == list(rows)

    metrics = httpx.get(f"{api.url}/metrics").text
    assert 'netgrow_jobs{status="succeeded"} 2.0' in metrics
    assert "netgrow_queue_depth 0.0" in metrics
    epochs_total = len(epoch_events) + baseline_job["progress"]["epoch"]
    assert f"netgrow_epochs_recorded_total {float(epochs_total)}" in metrics


def _check_weights(client: httpx.Client, job_id: str, model_spec: dict[str, Any]) -> None:
    from growth.models import build_model

    response = client.get(f"/v1/jobs/{job_id}/artifacts/weights")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    import hashlib
    import tempfile

    assert hashlib.sha256(response.content).hexdigest() == response.headers["x-content-sha256"]
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        handle.write(response.content)
        handle.flush()
        with safe_open(handle.name, framework="pt") as weights:
            assert json.loads(weights.metadata()["model"])["layers"] == model_spec["layers"]
            shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    expected = {name: tuple(t.shape) for name, t in build_model(model_spec).state_dict().items()}
    assert shapes == expected


def test_a_job_reads_its_dataset_from_the_workers_data_dir(api: LiveApi) -> None:
    """data.root names a folder in NETGROW_DATA_DIR; the worker (a thread here, a Celery process there)
    reads the files from its own data_dir, and the stored spec keeps the portable relative name."""
    write_tiny_mnist(api.settings.data_dir / "tiny-mnist", gz=True, train_size=40, test_size=5)
    client = api.user()
    spec = dense_spec() | {"data": {"name": "mnist", "root": "tiny-mnist", "image_size": 8, "val_fraction": 0.25},
                           "train": {"epochs": 2, "batch_size": 16}}
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["spec"]["data"]["root"] == "tiny-mnist"

    job = wait_finished(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    history = client.get(f"/v1/jobs/{job['id']}/history").json()
    assert [e["epoch"] for e in history["epochs"]] == [0, 1]

    # The folder vanishing between submission and the run fails the job with the field named.
    import shutil

    (api.settings.data_dir / "gone").mkdir()
    doomed = client.post("/v1/jobs", json=spec | {"data": {**spec["data"], "root": "gone"}})
    assert doomed.status_code == 201, doomed.text
    shutil.rmtree(api.settings.data_dir / "gone")
    failed = wait_finished(client, doomed.json()["id"])
    assert failed["status"] == "failed" and failed["error"].startswith("data.root")


def test_an_mnist_job_without_root_reads_the_mnist_folder_of_the_workers_data_dir(api: LiveApi) -> None:
    write_tiny_mnist(api.settings.data_dir / "mnist", gz=True, train_size=40, test_size=5)
    client = api.user()
    spec = dense_spec() | {"data": {"name": "mnist", "image_size": 8, "val_fraction": 0.25},
                           "train": {"epochs": 1, "batch_size": 16}}
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["spec"]["data"]["root"] is None  # the worker finds the folder, on its own machine
    job = wait_finished(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job["error"]


def test_a_job_without_root_is_accepted_and_fails_on_a_worker_without_the_files(
        embedded_api: LiveApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The API does not look for the files (they must be on the worker's machine, not its own); the
    worker that lacks them fails the job with the folders it searched and the line that installs them."""
    from growth.data import mnist

    monkeypatch.setattr(mnist, "SYSTEM_DATASETS", tmp_path / "no-system-datasets")  # the worker runs in-process
    client = embedded_api.user()
    spec = dense_spec() | {"data": {"name": "fashion_mnist", "image_size": 8}, "train": {"epochs": 1}}
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    job = wait_finished(client, submitted.json()["id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("data.root: is not set and no Fashion-MNIST files were found in "
                                   f"{embedded_api.settings.data_dir / 'fashion-mnist'}, ")
    assert "apt-get install -y dataset-fashion-mnist" in job["error"]


def test_a_dessilbi_prune_job_over_http_has_the_library_runs_history_and_prune_event(embedded_api: LiveApi) -> None:
    import growth

    spec = {"method": "dessilbi_prune", "seed": 0, "model": {"family": "vgg", "layers": [8, "M", 8], "classifier": []},
            "data": {"name": "digits"}, "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "threads": 1},
            "optimizer": {"nu": 1.0, "lam": 1.2}, "prune": {"finetune_epochs": 1, "finetune_lr": 0.02}}
    client = embedded_api.user()
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    messages = read_events(client, job_id)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]

    library = growth.run(spec)
    (event,) = library["events"]
    assert event["change"] == "prune" and event["epoch"] == 1
    streamed = [m.json() for m in messages if m.event == "architecture"]
    assert [(a["epoch"], a["change"], a["units"]) for a in streamed] == [(1, "prune", event["units"])]
    history = client.get(f"/v1/jobs/{job_id}/history").json()["epochs"]
    assert [e["phase"] for e in history] == [r["phase"] for r in library["history"]] == ["train", "train", "finetune"]
    assert [e["units"] for e in history] == [r["units"] for r in library["history"]]
    assert job["current_widths"] == library["final"]["widths"]
    assert job["metrics"]["test_accuracy"] == library["final"]["test_accuracy"]
