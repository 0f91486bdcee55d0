"""A user's own data and network over HTTP, on the real server: upload → grow → prune the grown net → ONNX.

The end-to-end scenario runs embedded (SQLite, jobs in the server's process)
and distributed (PostgreSQL, Redis, a real Celery worker process). The bad
uploads and references run against a server whose jobs stay queued.
"""
from __future__ import annotations

import json
import os
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api_support import LiveApi, read_events, running_api, smoke_spec, wait_finished
from tests.user_datasets import tar_with, write_digits_folder, write_digits_npz, zip_folder

pytestmark = pytest.mark.service


@pytest.fixture(params=["embedded", "celery"])
def api(request: pytest.FixtureRequest) -> LiveApi:
    return request.getfixturevalue(f"{request.param}_api")


def upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with open(path, "rb") as handle:
        return client.post("/v1/datasets", files={"file": (name or path.name, handle)}, timeout=120)


def stored_files(api: LiveApi) -> list[str]:
    """Every file under the server's uploads folder (staging included), relative to it."""
    root = api.settings.data_dir / "uploads"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def dataset_rows(api: LiveApi) -> int:
    from sqlalchemy import func, select

    from worker.store.models import Dataset
    from worker.store.session import session_scope

    with session_scope(api.settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


# --------------------------------------------------------------------------- the new user's path


def test_upload_grow_prune_the_grown_net_and_run_it_as_onnx(api: LiveApi, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from app.cli import main as netgrow

    key = api.key("alice")
    client = api.client(key)
    npz = tmp_path / "digits.npz"
    arrays = write_digits_npz(npz)

    # Upload: checked completely, described, stored by content.
    first = upload(client, npz)
    assert first.status_code == 201, first.text
    dataset = first.json()
    assert dataset["format"] == "npz" and dataset["image_shape"] == [1, 8, 8] and dataset["num_classes"] == 10
    assert dataset["train_samples"] == len(arrays["y"]) and dataset["test_samples"] == len(arrays["y_test"])
    assert dataset["class_names"][0] == "zero"
    import hashlib

    assert dataset["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    again = upload(client, npz, name="renamed.npz")
    assert again.status_code == 200 and again.json()["id"] == dataset["id"]
    assert client.get(f"/v1/datasets/{dataset['id']}").json()["sha256"] == dataset["sha256"]
    assert [d["id"] for d in client.get("/v1/datasets").json()["items"]] == [dataset["id"]]

    # Grow a network on it.
    data = {"name": "upload", "id": dataset["id"], "val_fraction": 0.15}
    grow = client.post("/v1/jobs", json=smoke_spec(data=data))
    assert grow.status_code == 201, grow.text
    assert grow.json()["spec"]["data"] == {"name": "upload", "id": dataset["id"], "sha256": dataset["sha256"],
                                           "format": "npz", "image_size": None, "val_fraction": 0.15,
                                           "test_fraction": 0.2, "augment": False, "limit": None}
    grown = wait_finished(client, grow.json()["id"])
    assert grown["status"] == "succeeded", grown["error"]
    widths = grown["current_widths"]

    # A model that contradicts the grown one is refused by name; so is a job that is not finished.
    conflict = client.post("/v1/jobs", json={"method": "l1_prune", "init": {"job": grown["id"]}, "data": data,
                                             "model": {"family": "vgg", "layers": [99, "M", 4]}})
    assert conflict.status_code == 422
    assert conflict.json()["detail"][0]["loc"] == ["body", "model", "layers"]

    # Grow, then prune: an L1-prune job that starts from the grown network.
    prune_spec = {"method": "l1_prune", "init": {"job": grown["id"]}, "data": data,
                  "train": {"batch_size": 128},
                  "prune": {"keep": {"conv1": 0.5}, "finetune_epochs": 2, "finetune_lr": 0.01}}
    pruned_submit = client.post("/v1/jobs", json=prune_spec)
    assert pruned_submit.status_code == 201, pruned_submit.text
    assert pruned_submit.json()["spec"]["init"] == {"job": grown["id"], "weights": None}
    assert pruned_submit.json()["spec"]["model"]["layers"] == [widths["conv1"], "M", widths["conv2"]]
    messages = read_events(client, pruned_submit.json()["id"])
    architecture = [m.json() for m in messages if m.event == "architecture"]
    assert architecture[0]["change"] == "init"
    assert architecture[0]["units"] == {name: [width, width] for name, width in widths.items()}
    assert architecture[1]["change"] == "prune"
    assert architecture[1]["units"]["conv1"] == [widths["conv1"], -(-widths["conv1"] // 2)]
    pruned = client.get(f"/v1/jobs/{pruned_submit.json()['id']}").json()
    assert pruned["status"] == "succeeded", pruned["error"]
    assert pruned["progress"]["epoch"] == 2  # fine-tuning only: the network came trained

    # The dataset is in use by nobody unfinished now; the CLI lists it and downloads the network as ONNX.
    server = ["--server", api.url, "--key", key]
    assert netgrow(["data", "list", *server]) == 0
    onnx_file = tmp_path / "pruned.onnx"
    assert netgrow(["download", pruned["id"], "--format", "onnx", "--out", str(onnx_file), *server]) == 0
    weights_file = tmp_path / "pruned.safetensors"
    assert netgrow(["download", pruned["id"], "--out", str(weights_file), *server]) == 0
    spec_file = tmp_path / "pruned.json"
    assert netgrow(["download", pruned["id"], "--format", "spec", "--out", str(spec_file), *server]) == 0
    assert json.loads(spec_file.read_text())["layers"][0] == -(-widths["conv1"] // 2)

    # The ONNX file runs with onnxruntime alone on the real test images (pixels in [0, 1]) ...
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    pixels = (arrays["x_test"].astype(np.float32) / 255)[:, None]
    (logits,) = session.run(["logits"], {"images": pixels})
    accuracy = float((logits.argmax(1) == arrays["y_test"]).mean())
    assert accuracy > 0.25, accuracy  # a few epochs of a tiny net; ten classes: chance is 0.1
    # ... and gives the logits PyTorch gives with the downloaded weights and the job's normalisation.
    expected = _torch_logits(weights_file, pixels)
    assert np.max(np.abs(logits - expected)) < 1e-4
    # Exported once: the cached file is served again as it is.
    cached = api.settings.artifact_dir / pruned["id"] / "model.onnx"
    stamp = cached.stat().st_mtime_ns
    assert client.get(f"/v1/jobs/{pruned['id']}/artifacts/model.onnx").content == onnx_file.read_bytes()
    assert cached.stat().st_mtime_ns == stamp


def _torch_logits(weights: Path, pixels: np.ndarray) -> np.ndarray:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from growth.models import build_model

    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    model = build_model(json.loads(metadata["model"]))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    pre = json.loads(metadata["preprocessing"])
    mean = torch.tensor(pre["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(pre["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        return model((torch.from_numpy(pixels) - mean) / std).numpy()


# --------------------------------------------------------------------------- bad input, nothing half-written


@pytest.fixture
def upload_api(settings_env: Callable[..., Any], fresh_pg_url: str, redis_url: str) -> Iterator[LiveApi]:
    """PostgreSQL and Redis, no worker (jobs stay queued), and small upload limits."""
    settings = settings_env(database_url=fresh_pg_url, broker_url=redis_url, max_upload_bytes=2_000_000,
                            max_upload_unpacked_bytes=4_000_000, max_upload_files=200)
    with running_api(settings, run_jobs=False) as api:
        yield api


def _bad_files(folder: Path) -> Iterator[tuple[str, Path, int, str]]:
    """(case, file, expected status, a phrase the error must contain)."""
    good = folder / "good.npz"
    write_digits_npz(good, limit=100, with_test=False)
    data = good.read_bytes()
    noise = folder / "noise.npz"
    noise.write_bytes(os.urandom(4000))
    yield "corrupt npz", noise, 422, "not a readable .npz file"
    cut = folder / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    yield "truncated npz", cut, 422, "truncated or corrupt"

    def npz(name: str, **arrays: np.ndarray) -> Path:
        path = folder / name
        np.savez(path, **arrays)
        return path

    x = np.zeros((6, 4, 4), np.uint8)
    yield "mismatched lengths", npz("lengths.npz", x=x, y=np.array([0, 1, 0])), 422, "6 images but y holds 3"
    yield "label out of range", npz("range.npz", x=x, y=np.array([0, 1, 2, 0, 1, 9]),
                                    classes=np.array(["a", "b", "c"])), 422, "label 9"
    yield "one class", npz("one.npz", x=x, y=np.zeros(6, np.int64)), 422, "at least two classes"
    objects = np.empty(6, dtype=object)
    objects[:] = list(range(6))
    yield "pickled objects", npz("pickle.npz", x=x, y=objects), 422, "Python objects"
    bomb_npz = folder / "bomb.npz"
    np.savez_compressed(bomb_npz, x=np.zeros((300, 128, 128), np.uint8), y=np.arange(300) % 2)
    yield "npz bomb", bomb_npz, 413, "once decompressed"
    big = folder / "big.npz"
    np.savez(big, x=np.random.default_rng(0).integers(0, 256, (200, 100, 100), dtype=np.uint8),
             y=np.arange(200) % 2)
    yield "over the upload limit", big, 413, "larger than this server's limit"

    escape = folder / "escape.zip"
    with zipfile.ZipFile(escape, "w") as bundle:
        bundle.writestr("cat/a.png", b"x")
        bundle.writestr("../../evil.png", b"x")
    yield "../ path", escape, 422, "climbs out"
    link = tarfile.TarInfo("cat/a.png")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    yield "symlink", tar_with(folder / "link.tar", [(link, None)]), 422, "is a link"
    bomb = folder / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("cat/zeros.png", b"\0" * (50 << 20))
    yield "zip bomb", bomb, 413, "unpacks to"
    write_digits_folder(folder / "one-class", classes=(3,))
    yield "one class folder", zip_folder(folder / "one-class", folder / "one-class.zip"), 422, "one class"


def test_every_bad_upload_is_refused_by_name_and_leaves_nothing(upload_api: LiveApi, tmp_path: Path) -> None:
    client = upload_api.user()
    for case, path, status, phrase in _bad_files(tmp_path):
        response = upload(client, path)
        assert response.status_code == status, (case, response.text)
        detail = response.json()["detail"]
        message = detail if isinstance(detail, str) else detail[0]["msg"]
        if status == 422:
            assert detail[0]["loc"] == ["body", "file"], case
        assert phrase in message, (case, message)
        assert stored_files(upload_api) == [], case
    assert dataset_rows(upload_api) == 0

    not_multipart = client.post("/v1/datasets", content=b"x" * 10, headers={"content-type": "application/octet-stream"})
    assert not_multipart.status_code == 415 and "multipart/form-data" in not_multipart.json()["detail"]
    wrong_field = client.post("/v1/datasets", files={"data": ("a.npz", b"123")})
    assert wrong_field.status_code == 400 and "'file'" in wrong_field.json()["detail"]
    assert stored_files(upload_api) == []


def test_a_job_trains_on_an_uploaded_image_folder_archive(embedded_api: LiveApi, tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "mydata", split=True, classes=(0, 1, 2))
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(tmp_path / "mydata", "mydata")  # wrapped in one folder, as `tar czf x mydata` does
    client = embedded_api.user()
    response = upload(client, archive)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["format"] == "image_folder" and dataset["class_names"] == ["digit-0", "digit-1", "digit-2"]
    assert (dataset["train_samples"], dataset["test_samples"]) == (12, 6)
    stored = embedded_api.settings.data_dir / "uploads"
    (images,) = [p for p in stored.rglob("images") if p.is_dir()]
    assert sorted(p.name for p in images.iterdir()) == ["test", "train"]  # the wrapping folder is lifted
    assert list((stored / ".staging").iterdir()) == []

    spec = {"method": "dense", "model": {"family": "vgg", "layers": [4, "M", 4]},
            "data": {"name": "upload", "id": dataset["id"], "image_size": 8, "val_fraction": 0.25},
            "train": {"epochs": 1, "batch_size": 8}}
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["spec"]["model"]["num_classes"] == 3
    job = wait_finished(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job["error"]


def test_datasets_belong_to_their_owner_and_are_not_deleted_while_used(upload_api: LiveApi, tmp_path: Path) -> None:
    npz = tmp_path / "digits.npz"
    write_digits_npz(npz, limit=200, with_test=False)
    alice, bob = upload_api.user("alice"), upload_api.user("bob")
    dataset = upload(alice, npz).json()
    path = f"/v1/datasets/{dataset['id']}"

    assert bob.get(path).status_code == 404
    assert bob.delete(path).status_code == 404
    assert bob.get("/v1/datasets").json()["items"] == []
    spec = smoke_spec(data={"name": "upload", "id": dataset["id"]})
    stolen = bob.post("/v1/jobs", json=spec)
    assert stolen.status_code == 422 and stolen.json()["detail"][0]["loc"] == ["body", "data", "id"]
    # Bob uploading the same bytes gets a dataset of his own.
    bobs = upload(bob, npz)
    assert bobs.status_code == 201 and bobs.json()["id"] != dataset["id"]

    job = alice.post("/v1/jobs", json=spec)  # no worker: it stays queued
    assert job.status_code == 201, job.text
    busy = alice.delete(path)
    assert busy.status_code == 409 and job.json()["id"] in busy.json()["detail"]
    # init.job of an unfinished job, and of someone else's job.
    unfinished = alice.post("/v1/jobs", json={"method": "dense", "init": {"job": job.json()["id"]},
                                              "data": spec["data"]})
    assert unfinished.status_code == 422 and "is queued" in unfinished.json()["detail"][0]["msg"]
    foreign = bob.post("/v1/jobs", json={"method": "dense", "init": {"job": job.json()["id"]},
                                         "data": {"name": "upload", "id": bobs.json()["id"]}})
    assert foreign.status_code == 422 and foreign.json()["detail"][0]["loc"] == ["body", "init", "job"]
    assert "no job" in foreign.json()["detail"][0]["msg"]
    path_init = alice.post("/v1/jobs", json={"method": "dense", "init": {"weights": "/etc/passwd"},
                                             "data": spec["data"]})
    assert path_init.status_code == 422 and path_init.json()["detail"][0]["loc"] == ["body", "init", "weights"]

    assert alice.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200
    before = stored_files(upload_api)
    assert alice.delete(path).status_code == 204
    assert alice.get(path).status_code == 404
    after = stored_files(upload_api)
    assert len(after) == len(before) - 1 and bob.get(f"/v1/datasets/{bobs.json()['id']}").status_code == 200
    assert bob.delete(f"/v1/datasets/{uuid.uuid4()}").status_code == 404
