"""growth.data: specs, seeded splits, the dataset readers, batching and augmentation.

The on-disk readers are tested on tiny files written here in the real formats
(CIFAR python pickles with bytes keys, MNIST IDX with the real magic numbers).
"""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from growth.data import (
    DATASET_NAMES,
    Splits,
    augment,
    batches,
    default_pad,
    load_dataset,
    stratified_split,
    validate_data_spec,
)
from growth.data import mnist
from growth.data.loader import resize
from growth.data.safe_pickle import restricted_load
from growth.data.spec import FOUND_WITHOUT_ROOT
from growth.spec import dataset_bytes
from tests.dataset_files import write_tiny_mnist
from growth.errors import DataError, SpecError

# --------------------------------------------------------------------------- helpers


def pixel_keys(images: torch.Tensor, splits: Splits, levels: float) -> list[tuple[int, ...]]:
    """Undo the normalisation and quantise back to the stored integer pixels, one tuple per image."""
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    pixels = torch.round((images * std + mean) * levels).to(torch.int64)
    return [tuple(row) for row in pixels.flatten(1).tolist()]


def cifar_batch(images: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> dict[bytes, object]:
    # The published batches also carry these bookkeeping entries.
    return {
        b"batch_label": b"tiny batch",
        label_key: labels,
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


def write_pickle(path: Path, content: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with path.open("wb") as file:
        pickle.dump(content, file, protocol=protocol)


def write_tiny_cifar10(parent: Path, protocol: int = pickle.DEFAULT_PROTOCOL, per_batch: int = 4,
                       test_size: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Five training batches and a test batch; test pixels are all odd, train pixels all even."""
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_x = (rng.integers(0, 128, size=(5 * per_batch, 3, 32, 32)) * 2).astype(np.uint8)
    train_y = np.arange(5 * per_batch) % 10
    test_x = (rng.integers(0, 128, size=(test_size, 3, 32, 32)) * 2 + 1).astype(np.uint8)
    test_y = (np.arange(test_size) * 3) % 10
    for i in range(5):
        rows = slice(i * per_batch, (i + 1) * per_batch)
        write_pickle(folder / f"data_batch_{i + 1}", cifar_batch(train_x[rows], train_y[rows].tolist()), protocol)
    write_pickle(folder / "test_batch", cifar_batch(test_x, test_y.tolist()), protocol)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch}, protocol)
    return train_x, train_y, test_x, test_y


def python2_string(value: bytes) -> bytes:
    """A Python 2 ``str`` opcode (SHORT_BINSTRING / BINSTRING)."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<I", len(value)) + value


def python2_cifar_batch(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the published files were: Python 2 cPickle, protocol 2,
    ``str`` keys and pixel bytes, numpy 1.x's ``numpy.core.multiarray._reconstruct``."""
    rows = images.reshape(len(images), -1)
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + python2_string(b"b") + b"\x87R"
        + b"(K\x01J" + struct.pack("<i", rows.shape[0]) + b"J" + struct.pack("<i", rows.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + python2_string(b"u1") + b"K\x00K\x01\x87R"
        + b"(K\x03" + python2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        + b"\x89" + python2_string(rows.astype(np.uint8).tobytes()) + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    return (b"\x80\x02}(" + python2_string(b"data") + array + python2_string(b"labels") + label_list
            + python2_string(b"batch_label") + python2_string(b"training batch 2 of 5") + b"u.")


class RunsShellCommand:
    """Unpickling this with the default unpickler runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return eval, ("1 + 1",)


# --------------------------------------------------------------------------- spec


def test_validate_fills_defaults_and_is_idempotent() -> None:
    spec = validate_data_spec({"name": "digits"})
    assert spec == {"name": "digits", "root": None, "image_size": None, "val_fraction": 0.1,
                    "test_fraction": 0.2, "augment": False, "limit": None}
    assert validate_data_spec(spec) == spec
    synthetic = validate_data_spec({"name": "synthetic", "channels": 1})
    assert synthetic["channels"] == 1 and synthetic["num_classes"] == 10 and synthetic["noise"] == 1.0
    assert validate_data_spec(synthetic) == synthetic


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "imagenet"}, "data.name"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"val_fraction": -0.1}, "data.val_fraction"),
        ({"val_fraction": "0.1"}, "data.val_fraction"),
        ({"test_fraction": 0.0}, "data.test_fraction"),
        ({"limit": True}, "data.limit"),
        ({"limit": 0}, "data.limit"),
        ({"image_size": 8.5}, "data.image_size"),
        ({"augment": "yes"}, "data.augment"),
        ({"num_classes": 3}, "data.num_classes"),  # synthetic-only field on digits
        ({"colour": True}, "data.colour"),
        ({"name": "cifar10"}, "data.root"),
        ({"name": "mnist", "root": 3}, "data.root"),
        ({"name": "synthetic", "samples": 5, "num_classes": 10}, "data.samples"),
        ({"name": "synthetic", "noise": float("nan")}, "data.noise"),
    ],
)
def test_validate_names_the_bad_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_data_spec(spec)
    assert caught.value.field == field


def test_unknown_dataset_lists_the_valid_ones() -> None:
    with pytest.raises(SpecError) as caught:
        load_dataset({"name": "imagenet"}, seed=0)
    for name in DATASET_NAMES:
        assert name in caught.value.message


def test_root_accepts_paths(tmp_path: Path) -> None:
    assert validate_data_spec({"name": "cifar10", "root": tmp_path})["root"] == str(tmp_path)


# --------------------------------------------------------------------------- stratified split


def test_stratified_split_keeps_class_proportions_with_exact_total() -> None:
    # 3/3/4 samples, 5 drawn: exact shares 1.5/1.5/2.0 -> floors 1/1/2, and the
    # one left over goes to the lowest class among the largest remainders.
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    rest, drawn = stratified_split(labels, 5, torch.Generator().manual_seed(3))
    assert torch.bincount(labels[drawn], minlength=3).tolist() == [2, 1, 2]
    assert torch.cat([rest, drawn]).sort().values.tolist() == list(range(10))
    assert rest.tolist() == sorted(rest.tolist()) and drawn.tolist() == sorted(drawn.tolist())


def test_stratified_split_is_a_function_of_the_generator_state() -> None:
    labels = torch.arange(200) % 7
    first = stratified_split(labels, 50, torch.Generator().manual_seed(11))
    again = stratified_split(labels, 50, torch.Generator().manual_seed(11))
    other = stratified_split(labels, 50, torch.Generator().manual_seed(12))
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


def test_stratified_split_edge_counts() -> None:
    labels = torch.tensor([1, 0, 1])
    rest, drawn = stratified_split(labels, 0, torch.Generator())
    assert rest.tolist() == [0, 1, 2] and drawn.numel() == 0
    rest, drawn = stratified_split(labels, 3, torch.Generator())
    assert rest.numel() == 0 and drawn.tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset({"name": "digits"}, seed=0)


@pytest.fixture(scope="module")
def sklearn_digits() -> dict[tuple[int, ...], int]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {tuple(int(v) for v in row): int(label) for row, label in zip(bunch.data, bunch.target)}


def test_digits_shapes_and_classes(digits: Splits) -> None:
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.class_names == tuple("0123456789")
    # 1,797 images: round(0.2·1797) = 359 test, round(0.1·1438) = 144 validation.
    assert [len(split[1]) for split in (digits.train, digits.val, digits.test)] == [1294, 144, 359]
    for x, y in (digits.train, digits.val, digits.test):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
        assert set(y.tolist()) == set(range(10))  # stratified: every class in every split


def test_digits_splits_partition_the_real_data(digits: Splits, sklearn_digits: dict[tuple[int, ...], int]) -> None:
    keys = {name: pixel_keys(getattr(digits, name)[0], digits, 16.0) for name in ("train", "val", "test")}
    sets = {name: set(found) for name, found in keys.items()}
    assert all(len(sets[name]) == len(keys[name]) for name in keys)  # the 1,797 images are distinct
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(sklearn_digits)
    for name in keys:  # every image kept its own label
        labels = getattr(digits, name)[1].tolist()
        assert all(sklearn_digits[key] == label for key, label in zip(keys[name], labels))


def test_digits_split_is_deterministic_per_seed(digits: Splits) -> None:
    again = load_dataset({"name": "digits"}, seed=0)
    other = load_dataset({"name": "digits"}, seed=1)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(digits, name)[0], getattr(again, name)[0])
        assert torch.equal(getattr(digits, name)[1], getattr(again, name)[1])
    assert not torch.equal(digits.test[1], other.test[1])


def test_normalisation_uses_train_statistics_only(digits: Splits, sklearn_digits: dict[tuple[int, ...], int]) -> None:
    train_pixels = torch.tensor(pixel_keys(digits.train[0], digits, 16.0), dtype=torch.float64) / 16
    everything = torch.tensor(list(sklearn_digits), dtype=torch.float64) / 16
    assert digits.mean[0] == pytest.approx(train_pixels.mean().item(), abs=1e-6)
    assert digits.std[0] == pytest.approx(train_pixels.std(correction=0).item(), abs=1e-6)
    assert abs(digits.mean[0] - everything.mean().item()) > 1e-5  # not the whole-data mean
    train_x = digits.train[0]
    assert train_x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_x.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    assert digits.test[0].mean().item() != pytest.approx(0.0, abs=1e-5)


def test_limit_caps_the_training_pool_not_the_test_set() -> None:
    splits = load_dataset({"name": "digits", "limit": 100}, seed=0)
    assert len(splits.train[1]) + len(splits.val[1]) == 100 and len(splits.val[1]) == 10
    assert len(splits.test[1]) == 359
    assert set(splits.train[1].tolist()) == set(range(10))


def test_resize_is_bilinear() -> None:
    image = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    expected = torch.tensor([[0.0, 1.0, 3.0, 4.0], [2.0, 3.0, 5.0, 6.0], [6.0, 7.0, 9.0, 10.0], [8.0, 9.0, 11.0, 12.0]])
    assert torch.allclose(resize(image, 4)[0, 0], expected)
    constant = torch.full((2, 3, 8, 8), 0.25)
    assert torch.allclose(resize(constant, 3), torch.full((2, 3, 3, 3), 0.25))


def test_digits_resized() -> None:
    splits = load_dataset({"name": "digits", "image_size": 16}, seed=0)
    assert splits.input_shape == (1, 16, 16)
    assert splits.train[0].shape[1:] == (1, 16, 16) and splits.test[0].shape[1:] == (1, 16, 16)
    assert splits.train[0].mean().item() == pytest.approx(0.0, abs=1e-5)


def test_val_fraction_zero_gives_an_empty_validation_split() -> None:
    splits = load_dataset({"name": "digits", "val_fraction": 0.0}, seed=0)
    assert splits.val[0].shape == (0, 1, 8, 8) and len(splits.train[1]) == 1438


@pytest.mark.parametrize("spec", [
    {"name": "digits"},
    {"name": "digits", "image_size": 12, "limit": 300, "test_fraction": 0.3},
    {"name": "synthetic", "samples": 250, "channels": 2, "size": 5, "num_classes": 5},
], ids=["digits", "digits-resized-limited", "synthetic"])
def test_dataset_bytes_is_what_the_loader_holds(spec: dict[str, object]) -> None:
    splits = load_dataset(spec, seed=0)
    held = sum(images.nbytes for images, _ in (splits.train, splits.val, splits.test))
    assert dataset_bytes(validate_data_spec(spec)) == held


def test_dataset_bytes_counts_the_published_sizes_of_fixed_datasets() -> None:
    # CIFAR-10: at most 1 000 of the 50 000 training images kept, all 10 000 test images, 3×40×40 float32.
    cifar = validate_data_spec({"name": "cifar10", "root": "anywhere", "image_size": 40, "limit": 1000})
    assert dataset_bytes(cifar) == (1000 + 10_000) * 3 * 40 * 40 * 4
    assert dataset_bytes(validate_data_spec({"name": "mnist", "root": "x"})) == 70_000 * 28 * 28 * 4


def test_splits_move_to_a_device(digits: Splits) -> None:
    moved = digits.to("meta")
    for x, y in (moved.train, moved.val, moved.test):
        assert x.device.type == "meta" and y.device.type == "meta"
    assert moved.input_shape == digits.input_shape and digits.train[0].device.type == "cpu"


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_balance() -> None:
    spec = {"name": "synthetic", "num_classes": 4, "channels": 2, "size": 12, "samples": 200}
    splits = load_dataset(spec, seed=0)
    assert splits.input_shape == (2, 12, 12) and splits.num_classes == 4
    assert len(splits.test[1]) == 40 and len(splits.val[1]) == 16 and len(splits.train[1]) == 144
    assert torch.bincount(splits.train[1]).tolist() == [36] * 4


def denormalised_pool(splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of every split in its original scale, ordered by its first pixels, with labels."""
    x = torch.cat([splits.train[0], splits.val[0], splits.test[0]])
    y = torch.cat([splits.train[1], splits.val[1], splits.test[1]])
    x = x * torch.tensor(splits.std).view(1, -1, 1, 1) + torch.tensor(splits.mean).view(1, -1, 1, 1)
    order = torch.argsort(x.flatten(1)[:, 0])
    return x[order], y[order]


def test_synthetic_data_depends_on_spec_not_seed() -> None:
    spec = {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 6, "samples": 30, "noise": 0.5}
    a, b = load_dataset(spec, seed=0), load_dataset(spec, seed=5)
    assert not torch.equal(a.test[1], b.test[1])  # different splits ...
    (xa, ya), (xb, yb) = denormalised_pool(a), denormalised_pool(b)
    assert torch.allclose(xa, xb, atol=1e-4) and torch.equal(ya, yb)  # ... of the same data


def test_noise_free_synthetic_classes_are_their_templates() -> None:
    spec = {"name": "synthetic", "num_classes": 3, "channels": 2, "size": 5, "samples": 30, "noise": 0.0}
    x, y = denormalised_pool(load_dataset(spec, seed=0))
    templates = [x[y == label][0] for label in range(3)]
    for label in range(3):
        members = x[y == label]
        assert len(members) == 10
        assert torch.allclose(members, templates[label].expand_as(members), atol=1e-5)
    assert not torch.allclose(templates[0], templates[1], atol=0.1)


def test_synthetic_is_learnable_from_the_training_split() -> None:
    splits = load_dataset({"name": "synthetic", "samples": 600}, seed=0)
    x, y = splits.train
    centroids = torch.stack([x[y == label].mean(0) for label in range(splits.num_classes)]).flatten(1)
    test_x, test_y = splits.test
    predicted = torch.cdist(test_x.flatten(1), centroids).argmin(1)
    assert (predicted == test_y).float().mean().item() > 0.9
    chance = torch.cdist(test_x.flatten(1), centroids.roll(1, 0)).argmin(1)
    assert (chance == test_y).float().mean().item() < 0.3


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_reads_the_python_batches(tmp_path: Path, protocol: int) -> None:
    train_x, train_y, test_x, test_y = write_tiny_cifar10(tmp_path, protocol)
    splits = load_dataset({"name": "cifar10", "root": str(tmp_path)}, seed=0)
    assert splits.num_classes == 10 and splits.input_shape == (3, 32, 32)
    assert splits.class_names is not None and splits.class_names[0] == "airplane"
    assert len(splits.train[1]) == 18 and len(splits.val[1]) == 2
    # The test batch is kept whole and in order.
    assert pixel_keys(splits.test[0], splits, 255.0) == [tuple(row) for row in test_x.reshape(6, -1).tolist()]
    assert splits.test[1].tolist() == test_y.tolist()
    # Train and validation come from the training batches only (even pixels), labels attached.
    by_pixels = {tuple(row): int(label) for row, label in zip(train_x.reshape(20, -1).tolist(), train_y)}
    pool = pixel_keys(torch.cat([splits.train[0], splits.val[0]]), splits, 255.0)
    pool_labels = torch.cat([splits.train[1], splits.val[1]]).tolist()
    assert sorted(pool) == sorted(by_pixels)
    assert all(by_pixels[key] == label for key, label in zip(pool, pool_labels))


def test_cifar10_reads_python2_pickles(tmp_path: Path) -> None:
    train_x, train_y, _, _ = write_tiny_cifar10(tmp_path)
    rows = slice(4, 8)  # data_batch_2
    replacement = (255 - train_x[rows]).copy()  # odd pixels: tell them apart from the rest
    labels = [9, 8, 7, 6]
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(python2_cifar_batch(replacement, labels))
    splits = load_dataset({"name": "cifar10", "root": tmp_path, "val_fraction": 0.0}, seed=0)
    keys = pixel_keys(splits.train[0], splits, 255.0)
    found = {key: label for key, label in zip(keys, splits.train[1].tolist()) if key[0] % 2 == 1}
    expected = {tuple(row): label for row, label in zip(replacement.reshape(4, -1).tolist(), labels)}
    assert found == expected


def test_cifar10_root_may_be_the_extracted_folder(tmp_path: Path) -> None:
    write_tiny_cifar10(tmp_path)
    parent = load_dataset({"name": "cifar10", "root": tmp_path}, seed=3)
    folder = load_dataset({"name": "cifar10", "root": tmp_path / "cifar-10-batches-py"}, seed=3)
    assert torch.equal(parent.train[0], folder.train[0]) and torch.equal(parent.val[1], folder.val[1])


def test_cifar10_with_image_size_and_limit(tmp_path: Path) -> None:
    write_tiny_cifar10(tmp_path)
    splits = load_dataset({"name": "cifar10", "root": tmp_path, "image_size": 16, "limit": 10}, seed=0)
    assert splits.input_shape == (3, 16, 16) and len(splits.train[1]) == 9 and len(splits.test[1]) == 6


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    train_x = rng.integers(0, 256, size=(30, 3, 32, 32), dtype=np.uint8)
    fine = [(7 * i) % 100 for i in range(30)]
    train = cifar_batch(train_x, fine, b"fine_labels") | {b"coarse_labels": [label // 5 for label in fine]}
    test_x = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    test = cifar_batch(test_x, [99, 0, 42, 1], b"fine_labels") | {b"coarse_labels": [19, 0, 8, 0]}
    write_pickle(folder / "train", train)
    write_pickle(folder / "test", test)
    names = [f"class_{i}".encode() for i in range(100)]
    write_pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]})

    splits = load_dataset({"name": "cifar100", "root": tmp_path, "val_fraction": 0.2}, seed=0)
    assert splits.num_classes == 100 and splits.class_names is not None and splits.class_names[99] == "class_99"
    assert splits.test[1].tolist() == [99, 0, 42, 1]
    assert len(splits.train[1]) == 24 and len(splits.val[1]) == 6
    assert sorted(torch.cat([splits.train[1], splits.val[1]]).tolist()) == sorted(fine)


def test_missing_cifar_folder_names_root_and_expected_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar10", "root": tmp_path / "nowhere"}, seed=0)
    assert caught.value.field == "data.root"
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar10", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and "cifar-10-batches-py" in caught.value.message
    assert "data_batch_1" in caught.value.message
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar100", "root": tmp_path}, seed=0)
    assert "cifar-100-python" in caught.value.message


def test_missing_cifar_test_batch(tmp_path: Path) -> None:
    write_tiny_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar10", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and "test_batch" in caught.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"not a pickle at all",
        [1, 2, 3],  # a pickle, but not a dict
        {b"labels": [0]},  # no data
        {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]},  # wrong row length
        {b"data": np.zeros((2, 3072), dtype=np.float32), b"labels": [0, 1]},  # wrong dtype
        {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0]},  # label count
        {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]},  # label range
        {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": ["a", "b"]},
    ],
)
def test_malformed_cifar_batch(tmp_path: Path, content: object) -> None:
    write_tiny_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_pickle(path, content)
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar10", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and "data_batch_3" in caught.value.message


@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_is_refused_not_run(tmp_path: Path, where: str) -> None:
    write_tiny_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = RunsShellCommand(f"touch {marker}")
    content = payload if where == "top" else {b"data": payload, b"labels": [0]}
    write_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1", content)
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "cifar10", "root": tmp_path}, seed=0)
    assert "refusing global" in caught.value.message
    assert not marker.exists()


def test_restricted_load_refuses_code_but_reads_arrays(tmp_path: Path) -> None:
    path = tmp_path / "p"
    write_pickle(path, CallsEval())
    with path.open("rb") as file, pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        restricted_load(file)
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        write_pickle(path, {b"a": array, b"b": [1, 2], b"c": b"bytes"}, protocol)
        with path.open("rb") as file:
            loaded = restricted_load(file)
        assert np.array_equal(loaded[b"a"], array) and loaded[b"b"] == [1, 2] and loaded[b"c"] == b"bytes"


class SharedStateArray:
    """Pickles as an array whose state is ``raw``: one memoized byte string, however many arrays refer to it."""

    def __init__(self, raw: bytes, dtype: object = np.dtype("u1"), shape: tuple[int, ...] | None = None) -> None:
        self.raw, self.dtype, self.shape = raw, dtype, shape

    def __reduce__(self) -> tuple[object, ...]:
        from numpy._core.multiarray import _reconstruct

        shape = self.shape if self.shape is not None else (len(self.raw),)
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, shape, self.dtype, False, self.raw)


class FlaggedDtype:
    """A raw ``V8`` dtype whose pickled state sets numpy's "holds objects" flags (63)."""

    def __reduce__(self) -> tuple[object, ...]:
        return np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 63)


def load_bytes(path: Path, content: bytes) -> object:
    path.write_bytes(content)
    with path.open("rb") as file:
        return restricted_load(file)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_load_refuses_object_arrays(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "p"
    with pytest.raises(pickle.UnpicklingError, match="holds Python objects"):
        load_bytes(path, pickle.dumps({b"data": np.array([1, "a"], dtype=object)}, protocol=protocol))
    # The flag set through a dtype's state, on raw bytes: the array would read 8 bytes as a pointer.
    with pytest.raises(pickle.UnpicklingError, match="holds Python objects"):
        load_bytes(path, pickle.dumps(SharedStateArray(bytes(8), FlaggedDtype(), (1,)), protocol=protocol))


def test_restricted_load_bounds_allocations_by_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "p"
    # numpy.ndarray((1 << 29,)): 26 bytes of pickle asking for 4 GiB of float64.
    tiny = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x20\x85\x85R."
    assert len(tiny) == 26
    with pytest.raises(pickle.UnpicklingError, match="4294967296 bytes"):
        load_bytes(path, tiny)
    # _reconstruct with a large initial shape.
    with pytest.raises(pickle.UnpicklingError, match="bytes"):
        load_bytes(path, pickle.dumps(SharedStateArray(b"", np.dtype("u1"), (0,)), protocol=2).replace(
            b"K\x00\x85", b"J\x00\x00\x00\x40\x85", 1))
    # One memoized 100 kB string as the state of 200 arrays: 20 MB from a 100 kB file.
    raw = bytes(100_000)
    content = pickle.dumps([SharedStateArray(raw) for _ in range(200)], protocol=4)
    assert len(content) < 110_000
    with pytest.raises(pickle.UnpicklingError, match="at most"):
        load_bytes(path, content)
    # The same arrays, each with its own bytes, fit: they are what the file holds.
    arrays = [np.full(1000, i, dtype=np.uint8) for i in range(20)]
    loaded = load_bytes(path, pickle.dumps(arrays, protocol=2))
    assert all(type(a) is np.ndarray and np.array_equal(a, b) for a, b in zip(loaded, arrays, strict=True))


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("name", "sub"), [("mnist", "."), ("fashion_mnist", "FashionMNIST/raw")])
def test_idx_datasets_read_back(tmp_path: Path, gz: bool, name: str, sub: str) -> None:
    train_x, train_y, test_x, test_y = write_tiny_mnist(tmp_path / sub, gz)
    splits = load_dataset({"name": name, "root": tmp_path}, seed=0)
    assert splits.num_classes == 10 and splits.input_shape == (1, 28, 28)
    assert splits.class_names is not None and len(splits.class_names) == 10
    if name == "fashion_mnist":
        assert splits.class_names[9] == "Ankle boot"
    assert pixel_keys(splits.test[0], splits, 255.0) == [tuple(row) for row in test_x.reshape(5, -1).tolist()]
    assert splits.test[1].tolist() == test_y.tolist()
    by_pixels = {tuple(row): int(label) for row, label in zip(train_x.reshape(20, -1).tolist(), train_y)}
    pool = pixel_keys(torch.cat([splits.train[0], splits.val[0]]), splits, 255.0)
    assert sorted(pool) == sorted(by_pixels) and len(splits.val[1]) == 2
    pool_labels = torch.cat([splits.train[1], splits.val[1]]).tolist()
    assert all(by_pixels[key] == label for key, label in zip(pool, pool_labels))


def test_idx_missing_file(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and "t10k-labels-idx1-ubyte" in caught.value.message
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist", "root": tmp_path / "empty-or-missing"}, seed=0)
    assert caught.value.field == "data.root"


@pytest.mark.parametrize(
    ("file", "payload", "complaint"),
    [
        ("train-labels-idx1-ubyte", struct.pack(">II", 0x00000803, 20) + bytes(20), "magic"),
        ("train-images-idx3-ubyte", struct.pack(">IIII", 0x00000803, 20, 28, 28) + bytes(100), "header says"),
        ("train-labels-idx1-ubyte", struct.pack(">II", 0x00000801, 3) + bytes(3), "labels"),
        ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x00000801, 5) + bytes([0, 1, 2, 3, 10]), "0..9"),
        ("t10k-images-idx3-ubyte", b"\x00\x00", "too short"),
    ],
)
def test_malformed_idx(tmp_path: Path, file: str, payload: bytes, complaint: str) -> None:
    write_tiny_mnist(tmp_path, gz=False)
    (tmp_path / file).write_bytes(payload)
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and complaint in caught.value.message


def test_corrupt_gzip(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist", "root": tmp_path}, seed=0)
    assert caught.value.field == "data.root" and "train-images-idx3-ubyte.gz" in caught.value.message


# Without data.root: data.root, else $NETGROW_DATA_DIR/<home>, else /usr/share/datasets/<home>. Each place
# gets a different number of training images, so the count read back says which one was used.


@pytest.fixture
def idx_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the NETGROW_DATA_DIR folder, the stand-in for /usr/share/datasets), both empty."""
    data_dir, system = tmp_path / "data-dir", tmp_path / "system"
    data_dir.mkdir()
    system.mkdir()
    monkeypatch.setenv("NETGROW_DATA_DIR", str(data_dir))
    monkeypatch.setattr(mnist, "SYSTEM_DATASETS", system)
    return data_dir, system


def pool_size(data: dict[str, object]) -> int:
    splits = load_dataset(data, seed=0)
    return len(splits.train[1]) + len(splits.val[1])


@pytest.mark.parametrize(("name", "home"), [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
def test_idx_files_are_searched_in_root_then_data_dir_then_system_folder(
        idx_places: tuple[Path, Path], tmp_path: Path, name: str, home: str) -> None:
    data_dir, system = idx_places
    write_tiny_mnist(system / home, gz=True, train_size=40)
    assert pool_size({"name": name}) == 40
    write_tiny_mnist(data_dir / home, gz=False, train_size=30)
    assert pool_size({"name": name}) == 30
    write_tiny_mnist(tmp_path / "mine", gz=False, train_size=20)
    assert pool_size({"name": name, "root": tmp_path / "mine"}) == 20
    # A root that holds nothing is an error, not a reason to fall back to the other places.
    with pytest.raises(DataError) as caught:
        load_dataset({"name": name, "root": tmp_path / "empty-or-missing"}, seed=0)
    assert caught.value.field == "data.root" and "empty-or-missing" in caught.value.message


def test_the_data_dir_may_hold_the_files_in_a_torchvision_layout(idx_places: tuple[Path, Path]) -> None:
    data_dir, _ = idx_places
    write_tiny_mnist(data_dir / "fashion-mnist" / "FashionMNIST" / "raw", gz=True, train_size=30)
    assert pool_size({"name": "fashion_mnist"}) == 30


def test_without_netgrow_data_dir_only_the_system_folder_is_searched(
        idx_places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, system = idx_places
    write_tiny_mnist(data_dir / "mnist", gz=True, train_size=30)
    monkeypatch.delenv("NETGROW_DATA_DIR")
    assert mnist.default_folders(mnist.MNIST) == [system / "mnist"]
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist"}, seed=0)
    assert "NETGROW_DATA_DIR is not set" in caught.value.message
    write_tiny_mnist(system / "mnist", gz=True, train_size=40)
    assert pool_size({"name": "mnist"}) == 40
    # The service passes its own data_dir (a default when the variable is unset) instead of the variable.
    assert mnist.find_default_root(mnist.MNIST, data_dir) == data_dir / "mnist"


def test_missing_fashion_mnist_names_the_apt_line_and_the_folders_searched(idx_places: tuple[Path, Path]) -> None:
    data_dir, system = idx_places
    (data_dir / "fashion-mnist").mkdir()  # present but empty: still not the data
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "fashion_mnist"}, seed=0)
    assert caught.value.field == "data.root"
    message = caught.value.message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert f"{data_dir / 'fashion-mnist'}, {system / 'fashion-mnist'}" in message
    assert all(name in message for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


def test_missing_mnist_names_the_folder_to_put_the_four_files_in(idx_places: tuple[Path, Path]) -> None:
    data_dir, system = idx_places
    with pytest.raises(DataError) as caught:
        load_dataset({"name": "mnist"}, seed=0)
    message = caught.value.message
    assert caught.value.field == "data.root" and "apt-get" not in message
    assert f"in {data_dir / 'mnist'}, {system / 'mnist'}:" in message
    assert f"put the four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, " \
           f"t10k-labels-idx1-ubyte, each plain or .gz) in {data_dir / 'mnist'}" in message


def test_only_the_idx_datasets_may_leave_out_root() -> None:
    assert validate_data_spec({"name": "fashion_mnist"})["root"] is None
    assert validate_data_spec({"name": "mnist", "root": None})["root"] is None
    for name in ("cifar10", "cifar100"):
        with pytest.raises(SpecError) as caught:
            validate_data_spec({"name": name})
        assert caught.value.field == "data.root"
    assert set(mnist.LAYOUTS) == set(FOUND_WITHOUT_ROOT)


REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"no {REAL_FASHION_MNIST}: `apt-get install -y dataset-fashion-mnist` installs it")
def test_the_packaged_fashion_mnist_files_are_the_published_data_set() -> None:
    raw = mnist.read_fashion_mnist(REAL_FASHION_MNIST)
    assert raw.train_images.shape == (60_000, 1, 28, 28) and raw.test_images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(raw.train_labels).tolist() == [6_000] * 10
    assert torch.bincount(raw.test_labels).tolist() == [1_000] * 10
    for images in (raw.train_images, raw.test_images):
        assert images.dtype == torch.uint8 and int(images.min()) == 0 and int(images.max()) == 255
    assert raw.class_names[0] == "T-shirt/top" and raw.scale == 1 / 255


def test_too_large_val_fraction_leaves_no_training_data() -> None:
    spec = {"name": "synthetic", "num_classes": 2, "samples": 4, "val_fraction": 0.9, "size": 4}
    with pytest.raises(SpecError) as caught:
        load_dataset(spec, seed=0)
    assert caught.value.field == "data.val_fraction"


# --------------------------------------------------------------------------- batches


def indexed_data(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] is filled with i and y[i] == i, so a batch shows which samples it holds."""
    y = torch.arange(count)
    return y.float().view(-1, 1, 1, 1).expand(count, 2, 3, 3).clone(), y


def test_batches_cover_every_sample_once_per_epoch() -> None:
    x, y = indexed_data(103)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        seen = list(batches(x, y, 10, generator))
        assert [len(yb) for _, yb in seen] == [10] * 10 + [3]
        order = torch.cat([yb for _, yb in seen])
        assert sorted(order.tolist()) == list(range(103))
        assert all(torch.equal(xb[:, 0, 0, 0], yb.float()) for xb, yb in seen)
    assert order.tolist() != list(range(103))


def test_batches_are_reproducible_from_the_generator_state() -> None:
    x, y = indexed_data(50)
    first = [yb for _, yb in batches(x, y, 8, torch.Generator().manual_seed(4))]
    again = [yb for _, yb in batches(x, y, 8, torch.Generator().manual_seed(4))]
    other = [yb for _, yb in batches(x, y, 8, torch.Generator().manual_seed(5))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_batches_draw_the_order_when_called() -> None:
    x, y = indexed_data(20)
    generator = torch.Generator().manual_seed(9)
    pending = batches(x, y, 20, generator)
    generator.manual_seed(123)  # changing the state afterwards must not matter
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(9))
    assert torch.equal(next(iter(pending))[1], expected)


def test_batches_in_order_and_drop_last() -> None:
    x, y = indexed_data(25)
    in_order = list(batches(x, y, 10, shuffle=False))
    assert [yb.tolist() for _, yb in in_order] == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    dropped = list(batches(x, y, 10, torch.Generator().manual_seed(0), drop_last=True))
    assert [len(yb) for _, yb in dropped] == [10, 10]
    with pytest.raises(ValueError):
        batches(x, y, 0, torch.Generator())


# --------------------------------------------------------------------------- augment


def reference_crop_flip(image: torch.Tensor, pad: int, top: int, left: int, mirrored: bool) -> torch.Tensor:
    """One image the obvious way: pad, slice, maybe flip."""
    height, width = image.shape[-2:]
    crop = F.pad(image, (pad, pad, pad, pad))[:, top:top + height, left:left + width]
    return crop.flip(-1) if mirrored else crop


def test_augment_output_is_a_padded_crop_maybe_flipped() -> None:
    x = torch.randn(40, 2, 6, 5, generator=torch.Generator().manual_seed(0))
    pad = 2
    out = augment(x, torch.Generator().manual_seed(1), pad=pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    found = []
    for image, result in zip(x, out):
        matches = [(top, left, mirrored)
                   for top in range(2 * pad + 1) for left in range(2 * pad + 1) for mirrored in (False, True)
                   if torch.equal(reference_crop_flip(image, pad, top, left, mirrored), result)]
        assert len(matches) == 1
        found.append(matches[0])
    assert any(mirrored for _, _, mirrored in found) and not all(mirrored for _, _, mirrored in found)
    assert len({(top, left) for top, left, _ in found}) > 5  # offsets vary between samples


def test_augment_is_deterministic_per_generator() -> None:
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_flip_only_and_crop_only() -> None:
    x = torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    flipped = augment(x, torch.Generator().manual_seed(2), pad=0)
    is_same = (flipped == x).flatten(1).all(1)
    is_mirror = (flipped == x.flip(-1)).flatten(1).all(1)
    assert bool((is_same | is_mirror).all()) and bool(is_same.any()) and bool(is_mirror.any())
    shifted = augment(x, torch.Generator().manual_seed(2), pad=1, flip=False)
    assert not torch.equal(shifted, x)
    assert default_pad(32) == 4 and default_pad(8) == 1 and default_pad(28) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_and_augment_on_the_device_match_the_cpu() -> None:
    x, y = indexed_data(37)
    on_cpu = [yb for _, yb in batches(x, y, 8, torch.Generator().manual_seed(1))]
    on_gpu = list(batches(x.cuda(), y.cuda(), 8, torch.Generator().manual_seed(1)))
    assert all(xb.is_cuda and yb.is_cuda for xb, yb in on_gpu)
    assert all(torch.equal(a, b.cpu()) for a, (_, b) in zip(on_cpu, on_gpu, strict=True))

    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(augment(images.cuda(), torch.Generator().manual_seed(3)).cpu(), expected)
    cuda_generator = torch.Generator(device="cuda")
    first = augment(images.cuda(), cuda_generator.manual_seed(3))
    assert first.is_cuda and torch.equal(first, augment(images.cuda(), cuda_generator.manual_seed(3)))
