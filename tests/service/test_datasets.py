"""worker.store.datasets: a job's data.root names a folder inside the server's data_dir, nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest

from growth.data import mnist
from growth.errors import SpecError
from tests.dataset_files import write_tiny_mnist
from worker.store.datasets import check_data_root, localize_data_root, resolve_data_root


@pytest.mark.parametrize(("root", "complaint"), [
    ("/etc", "absolute"),
    ("/", "absolute"),
    ("C:\\datasets\\cifar", "absolute"),
    ("\\\\host\\share", "absolute"),
    ("..", "'..'"),
    ("cifar/../../etc", "'..'"),
    ("cifar\\..\\..\\etc", "'..'"),
])
def test_roots_outside_data_dir_are_refused(tmp_path: Path, root: str, complaint: str) -> None:
    with pytest.raises(SpecError) as raised:
        resolve_data_root(root, tmp_path)
    assert raised.value.field == "data.root" and complaint in str(raised.value)


def test_relative_roots_land_inside_data_dir(tmp_path: Path) -> None:
    assert resolve_data_root("cifar-10-batches-py", tmp_path) == tmp_path / "cifar-10-batches-py"
    assert resolve_data_root("vision/mnist/raw", tmp_path) == tmp_path / "vision" / "mnist" / "raw"
    assert resolve_data_root("./mnist", tmp_path) == tmp_path / "mnist"


def test_a_missing_folder_is_refused_and_the_available_ones_listed(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "notes.txt").write_text("not a dataset folder")
    with pytest.raises(SpecError) as raised:
        check_data_root({"name": "mnist", "root": "mnsit"}, tmp_path)
    assert raised.value.field == "data.root"
    assert "'mnsit'" in str(raised.value) and "cifar10, mnist" in str(raised.value)
    with pytest.raises(SpecError, match="holds no folders"):
        check_data_root({"name": "mnist", "root": "mnist"}, tmp_path / "empty")
    check_data_root({"name": "mnist", "root": "mnist"}, tmp_path)
    check_data_root({"name": "digits", "root": None}, tmp_path)


def test_a_root_the_file_system_cannot_look_up_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as raised:  # is_dir() raises OSError (ENAMETOOLONG) for this one
        check_data_root({"name": "mnist", "root": "x" * 5000}, tmp_path)
    assert raised.value.field == "data.root"
    assert "File name too long" in str(raised.value) and "(5000 characters)" in str(raised.value)
    assert len(str(raised.value)) < 300


def test_localize_points_a_copy_of_the_spec_at_this_workers_data_dir(tmp_path: Path) -> None:
    stored = {"method": "dense", "data": {"name": "mnist", "root": "mnist"}}
    local = localize_data_root(stored, tmp_path)
    assert local["data"]["root"] == str(tmp_path / "mnist")
    assert stored["data"]["root"] == "mnist"  # the stored spec stays portable across hosts
    builtin = {"method": "dense", "data": {"name": "digits", "root": None}}
    assert localize_data_root(builtin, tmp_path) == builtin


def test_a_spec_without_root_gets_the_idx_folder_found_from_this_workers_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "system"
    monkeypatch.setattr(mnist, "SYSTEM_DATASETS", system)
    # The worker's data_dir, not the variable: a worker without NETGROW_DATA_DIR uses the settings' default.
    monkeypatch.setenv("NETGROW_DATA_DIR", str(tmp_path / "elsewhere"))
    data_dir = tmp_path / "datasets"
    stored = {"method": "dense", "data": {"name": "fashion_mnist", "root": None}}
    with pytest.raises(SpecError) as raised:
        localize_data_root(stored, data_dir)
    assert raised.value.field == "data.root"
    assert f"{data_dir / 'fashion-mnist'}, {system / 'fashion-mnist'}" in raised.value.message
    assert "apt-get install -y dataset-fashion-mnist" in raised.value.message

    write_tiny_mnist(system / "fashion-mnist", gz=True)
    assert localize_data_root(stored, data_dir)["data"]["root"] == str(system / "fashion-mnist")
    write_tiny_mnist(data_dir / "fashion-mnist", gz=True)
    assert localize_data_root(stored, data_dir)["data"]["root"] == str(data_dir / "fashion-mnist")
    assert stored["data"]["root"] is None  # the stored spec stays portable across hosts
