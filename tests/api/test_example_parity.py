"""Every Fashion-MNIST example gives the same result JSON through the library, `netgrow grow` and POST /v1/jobs.

Each example is shrunk to seconds (``shrink``: fewer epochs and samples, the
method's own fields as the example has them) and run on small generated IDX
files that all three find without ``data.root``: the library and the console
script through ``NETGROW_DATA_DIR``, the server's worker through its
``data_dir`` (the same folder). The server's result JSON is GET
/v1/jobs/{id}/result, compared whole with the other two.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

import growth
from api_support import REPO, LiveApi, running_api, wait_finished
from growth.spec import parse_spec
from tests.dataset_files import write_learnable_idx

pytestmark = [pytest.mark.service, pytest.mark.slow]

EXAMPLES = sorted((REPO / "examples").glob("fashion-*.json"))

# What shrink sets, as (section, field): epochs of every phase and the schedule fields counted in epochs,
# the training subset and the batch; one CPU thread, so that all three runs compute in the same order.
SHRUNK: dict[tuple[str, str], int] = {
    ("train", "epochs"): 3,
    ("train", "batch_size"): 32,
    ("train", "threads"): 1,
    ("data", "limit"): 100,
    ("growth", "every"): 1,
    ("growth", "finetune_epochs"): 2,
    ("autogrow", "every"): 1,
    ("autogrow", "patience"): 2,
    ("autogrow", "finetune_epochs"): 2,
    ("prune", "finetune_epochs"): 2,
}
MAX_EPOCHS = 8  # a shrunk example that would still run longer has a phase shrink does not know yet

# Fields that differ between runs of the same spec, or between the places that ran it.
IGNORED = (
    "wall_seconds", "history[].seconds",  # timing
    "weights",  # only the server has the weights (its download path); checked on its own below
)


def shrink(example: dict[str, Any]) -> dict[str, Any]:
    """``example`` with SHRUNK's fields lowered to those values (threads and batch set to them); nothing else."""
    spec = copy.deepcopy(example)
    old_epochs = spec["train"]["epochs"]
    for (section, name), value in SHRUNK.items():
        if section in spec:
            current = spec[section].get(name)
            spec[section][name] = value if current is None or name in ("threads", "batch_size") \
                else min(value, current)
    new_epochs = spec["train"]["epochs"]
    # Learning-rate milestones keep their place in the schedule: 11 of 15 epochs becomes 2 of 3.
    if spec["train"].get("lr_milestones"):
        spec["train"]["lr_milestones"] = sorted({max(1, min(new_epochs - 1, round(m * new_epochs / old_epochs)))
                                                 for m in spec["train"]["lr_milestones"]})
    return spec


def method_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The sections other than train and data, without the fields shrink may change."""
    return {section: {name: value for name, value in fields.items() if (section, name) not in SHRUNK}
            for section, fields in spec.items() if isinstance(fields, dict) and section not in ("train", "data")}


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` as JSON text gives it back, without IGNORED (``a.b`` a nested key, ``a[].b`` in every item)."""
    out = json.loads(json.dumps(result))
    for path in IGNORED:
        holders, keys = [out], path.split(".")
        for key in keys[:-1]:
            holders = [item for holder in holders for item in
                       (holder[key[:-2]] if key.endswith("[]") else [holder[key]])]
        for holder in holders:
            holder.pop(keys[-1], None)
    return out


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A NETGROW_DATA_DIR holding fashion-mnist/ (12 training and 3 test images per class), set for the module."""
    data_dir = tmp_path_factory.mktemp("datasets")
    write_learnable_idx(data_dir / "fashion-mnist", train_per_class=12, test_per_class=3)
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("NETGROW_"):
                patch.delenv(key)
        patch.setenv("NETGROW_DATA_DIR", str(data_dir))
        yield data_dir


@pytest.fixture(scope="module")
def server(fashion_dir: Path, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """One embedded server (SQLite, jobs run in its process) for every example."""
    from worker.store.session import dispose_engines
    from worker.store.settings import Settings

    folder = tmp_path_factory.mktemp("server")
    shutil.copyfile(sqlite_template, folder / "netgrow.db")
    settings = Settings(database_url=f"sqlite:///{folder / 'netgrow.db'}", broker_url=None,
                        artifact_dir=folder / "artifacts", data_dir=fashion_dir)
    with running_api(settings, run_jobs=True) as api:
        yield api
    dispose_engines()


@dataclass
class Pending:
    """One example's shrunk spec, its console-script process and its job on the server, all under way."""

    spec: dict[str, Any]
    folder: Path
    cli: Future[int]  # the console script's exit status
    client: httpx.Client
    job_id: str


@pytest.fixture(scope="module")
def pending(server: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pending]]:
    """Every example submitted to POST /v1/jobs and queued for the console script, one process after another.

    The console-script processes and the server's worker thread use the CPUs
    while each test runs the library in this process, so the module takes
    about what its CPU work takes rather than the sum of three start-ups per
    example. One torch thread for the whole process, so that runs side by
    side in it never change one another's thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    client = server.user()
    exe = shutil.which("netgrow") or str(Path(sys.executable).with_name("netgrow"))

    def console_script(folder: Path) -> int:
        with open(folder / "output.txt", "w") as output:
            return subprocess.run([exe, "grow", "spec.json", "--out", "result.json", "--quiet"], cwd=folder,
                                  stdout=output, stderr=subprocess.STDOUT, timeout=600).returncode

    started: dict[str, Pending] = {}
    with ThreadPoolExecutor(max_workers=1) as one_at_a_time:
        try:
            for example in EXAMPLES:
                spec = shrink(json.loads(example.read_text()))
                folder = tmp_path_factory.mktemp(example.stem)
                (folder / "spec.json").write_text(json.dumps(spec))
                submitted = client.post("/v1/jobs", json=spec)
                assert submitted.status_code == 201, submitted.text
                started[example.stem] = Pending(spec, folder, one_at_a_time.submit(console_script, folder),
                                                client, submitted.json()["id"])
            yield started
        finally:
            one_at_a_time.shutdown(cancel_futures=True)
            torch.set_num_threads(threads)


def test_the_fashion_examples_are_all_here() -> None:
    """Six methods of issue 10 (dessilbi_prune's example comes with its method)."""
    assert len(EXAMPLES) >= 6, [path.name for path in EXAMPLES]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_the_example_gives_the_same_result_through_library_cli_and_api(
        example: Path, server: LiveApi, pending: dict[str, Pending], fashion_dir: Path) -> None:
    from worker.store.models import Job
    from worker.store.session import session_scope

    original = json.loads(example.read_text())
    run = pending[example.stem]
    spec = run.spec
    assert "root" not in spec["data"] and spec["data"]["name"] == "fashion_mnist"
    assert parse_spec(spec).total_epochs <= MAX_EPOCHS
    assert method_fields(spec) == method_fields(original)

    library = growth.run(spec)
    job = wait_finished(run.client, run.job_id)
    assert job["status"] == "succeeded", job["error"]
    assert run.cli.result(timeout=600) == 0, (run.folder / "output.txt").read_text()
    response = run.client.get(f"/v1/jobs/{run.job_id}/result")
    assert response.status_code == 200, response.text
    served = response.json()
    assert served["weights"] == f"/v1/jobs/{run.job_id}/artifacts/weights" and "weights" not in library
    # The served spec is the job's, with no path in it; the worker's own copy of the result names the folder
    # it read: the generated files in its data_dir, not the packaged ones in /usr/share/datasets.
    assert served["spec"]["data"]["root"] is None and library["spec"]["data"]["root"] is None
    with session_scope(server.settings.database_url) as session:
        worker_spec = session.get(Job, uuid.UUID(run.job_id)).result["spec"]
    assert worker_spec["data"]["root"] == str(fashion_dir / "fashion-mnist")

    expected = comparable(library)
    assert comparable(json.loads((run.folder / "result.json").read_text())) == expected
    assert comparable(served) == expected
    # The job's own views agree with it.
    assert job["metrics"]["params"] == expected["final"]["params"]
    assert job["metrics"]["test_accuracy"] == expected["final"]["test_accuracy"]
    assert job["current_widths"] == expected["final"]["widths"]
    assert run.client.get(f"/v1/jobs/{run.job_id}/architecture").json()["model"] == expected["final"]["model"]
