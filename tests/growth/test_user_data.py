"""The datasets users bring: npz files and image folders, read for real and refused for every defect."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from growth.data.image_folder import inspect_image_folder, read_image_folder
from growth.data.npz import inspect_npz, read_npz
from growth.errors import DataError
from tests.user_datasets import digits_uint8, write_digits_folder, write_digits_npz, write_png

# --------------------------------------------------------------------------- npz: what is read


def test_npz_reads_real_digits_with_test_split_and_class_names(tmp_path: Path) -> None:
    path = tmp_path / "digits.npz"
    arrays = write_digits_npz(path)
    raw = read_npz(path)
    assert raw.train_images.shape == (len(arrays["x"]), 1, 8, 8)
    assert raw.train_images.dtype == torch.uint8 and raw.scale == pytest.approx(1 / 255)
    assert torch.equal(raw.train_images[:, 0], torch.from_numpy(arrays["x"]))
    assert torch.equal(raw.train_labels, torch.from_numpy(arrays["y"]))
    assert torch.equal(raw.test_images[:, 0], torch.from_numpy(arrays["x_test"]))
    assert raw.num_classes == 10 and raw.class_names[3] == "three"

    summary = inspect_npz(path)
    assert summary.to_dict() == {
        "format": "npz", "channels": 1, "image_shape": [1, 8, 8], "num_classes": 10,
        "class_names": list(arrays["classes"]), "train_samples": len(arrays["y"]),
        "test_samples": len(arrays["y_test"]), "pixel_dtype": "uint8",
    }


def test_npz_channels_last_become_channels_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "rgb.npz", x=x, y=y)
    raw = read_npz(tmp_path / "rgb.npz")
    assert raw.train_images.shape == (6, 3, 5, 4)
    # pixel (image 4, row 2, column 3, blue) lands at [4, blue, 2, 3]
    assert raw.train_images[4, 2, 2, 3].item() == x[4, 2, 3, 2]
    assert raw.class_names == ("0", "1", "2") and raw.test_images is None


def test_npz_float_images_in_unit_range_keep_their_values(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    np.savez(tmp_path / "f.npz", x=x, y=np.array([0, 1, 0, 1], dtype=np.uint8))
    raw = read_npz(tmp_path / "f.npz")
    assert raw.scale == 1.0 and torch.equal(raw.train_images[:, 0], torch.from_numpy(x))
    assert raw.num_classes == 2


# --------------------------------------------------------------------------- npz: what is refused


def refused(path: Path, *fragments: str, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as caught:
        read_npz(path, **kwargs)
    error = caught.value
    assert error.field == kwargs.get("field", "data.path")
    for fragment in fragments:
        assert fragment in error.message, error.message
    return error


def test_npz_random_bytes_are_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "noise.npz"
    path.write_bytes(os.urandom(3000))
    refused(path, "not a readable .npz file", "np.savez")


def test_npz_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.npz"
    write_digits_npz(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "truncated or corrupt")


def test_npz_corrupt_member_data(tmp_path: Path) -> None:
    path = tmp_path / "flipped.npz"
    write_digits_npz(path, compressed=False)
    data = bytearray(path.read_bytes())
    # The x member's pixels sit early in the file, after its local header and the npy header.
    for offset in range(400, 420):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    refused(path, "cannot be read", "x")


def test_npz_pickled_objects_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what an attacker's pickle would run on load
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.npz"
    y = np.empty(4, dtype=object)
    y[:] = [Payload(), 1, 0, 1]
    np.savez(path, x=np.zeros((4, 2, 2), np.uint8), y=y)
    with zipfile.ZipFile(path) as bundle:  # the pickle really is in the file
        assert b"mkdir" in bundle.read("y.npy")
    refused(path, "Python objects", "unpickling")
    assert not marker.exists()


def labels_file(tmp_path: Path, **arrays: np.ndarray) -> Path:
    base = {"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, 1, 0, 1])}
    base.update(arrays)
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(("arrays", "fragments"), [
    ({"y": np.array([0, 1, 0])}, ("x holds 4 images but y holds 3 labels",)),
    ({"y": np.array([0, 1, -1, 1])}, ("label -1", "0..K-1")),
    ({"y": np.array([0, 1, 5, 1]), "classes": np.array(["a", "b", "c"])}, ("label 5", "classes names 3", "0..2")),
    ({"y": np.array([2, 2, 2, 2])}, ("only class 2", "at least two classes")),
    ({"y": np.array([0.0, 1.0, 0.0, 1.0])}, ("labels must be integers", "astype(np.int64)")),
    ({"y": np.array([[0], [1], [0], [1]])}, ("1-D", "reshape(-1)")),
    ({"x": np.zeros((4, 3, 3), np.int64)}, ("dtype int64", "uint8")),
    ({"x": np.full((4, 3, 3), 255.0, np.float32)}, ("[255, 255]", "divide by 255")),
    ({"x": np.full((4, 3, 3), np.nan, np.float32)}, ("NaN",)),
    ({"x": np.zeros((4, 3, 8, 8), np.uint8)}, ("8 channels", "N×C×H×W", "transpose(0, 2, 3, 1)")),
    ({"x": np.zeros((4, 9), np.uint8)}, ("N×H×W",)),
    ({"x_test": np.zeros((2, 3, 3), np.uint8)}, ("x_test but no y_test",)),
    ({"x_test": np.zeros((2, 5, 5), np.uint8), "y_test": np.array([0, 1])}, ("x_test images are 5×5",)),
    ({"x_test": np.zeros((2, 3, 3), np.uint8), "y_test": np.array([0, 7])}, ("y_test holds the label 7",)),
    ({"classes": np.array(["a", "a"])}, ("'a' twice",)),
    ({"classes": np.array([1, 2])}, ("class names (strings)",)),
    ({"x_train": np.zeros((4, 3, 3), np.uint8)}, ("'x_train'", "x, y, x_test, y_test, classes")),
    ({"y": None}, ("no array 'y'",)),
])
def test_npz_defects_are_named_with_their_fix(tmp_path: Path, arrays: dict[str, np.ndarray],
                                              fragments: tuple[str, ...]) -> None:
    refused(labels_file(tmp_path, **arrays), *fragments)


def test_npz_bomb_is_refused_from_its_headers_before_decompressing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.zeros((2048, 128, 128), np.uint8), y=np.arange(2048) % 2)
    assert path.stat().st_size < 200_000  # 32 MiB of pixels in a small file
    refused(path, "32.0 MiB once decompressed", "at most 1.0 MiB", max_bytes=1 << 20, field="file")


def test_npz_missing_path_and_folder(tmp_path: Path) -> None:
    refused(tmp_path / "nope.npz", "no file")
    refused(tmp_path, "is a folder")


# --------------------------------------------------------------------------- image folders


def test_image_folder_reads_png_digits_with_labels_by_sorted_folder_name(tmp_path: Path) -> None:
    written = write_digits_folder(tmp_path / "digits", classes=(3, 7, 1))
    raw = read_image_folder(tmp_path / "digits")
    assert raw.class_names == ("digit-1", "digit-3", "digit-7")
    assert raw.train_images.shape == (18, 1, 8, 8) and raw.test_images is None
    labels = raw.train_labels.tolist()
    assert labels == [0] * 6 + [1] * 6 + [2] * 6
    expected = np.stack(written["digit-1"] + written["digit-3"] + written["digit-7"])
    assert torch.equal(raw.train_images[:, 0], torch.from_numpy(expected))  # PNG is lossless

    summary = inspect_image_folder(tmp_path / "digits")
    assert (summary.channels, summary.image_shape, summary.num_classes, summary.train_samples) == (1, (1, 8, 8), 3, 18)


def test_image_folder_train_and_test_folders(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "d", split=True, classes=(0, 1))
    raw = read_image_folder(tmp_path / "d")
    assert raw.train_labels.tolist() == [0] * 4 + [1] * 4
    assert raw.test_labels.tolist() == [0, 0, 1, 1]
    assert inspect_image_folder(tmp_path / "d").test_samples == 4


def test_image_folder_mixed_grey_and_colour_is_rgb_and_resized(tmp_path: Path) -> None:
    images, _ = digits_uint8()
    write_png(tmp_path / "d" / "grey" / "a.png", images[0])
    colour = np.zeros((12, 10, 3), np.uint8)
    colour[..., 0] = 200
    write_png(tmp_path / "d" / "red" / "b.png", colour)
    write_png(tmp_path / "d" / "red" / "c.jpg", colour, format="JPEG")
    with pytest.raises(DataError) as caught:
        read_image_folder(tmp_path / "d")
    assert caught.value.field == "data.image_size" and "set data.image_size" in caught.value.message

    raw = read_image_folder(tmp_path / "d", image_size=6)
    assert raw.train_images.shape == (3, 3, 6, 6)
    red = raw.train_images[raw.train_labels == 1].float()
    assert torch.allclose(red[:, 0], torch.full_like(red[:, 0], 200), atol=3)  # JPEG is close, not exact
    assert torch.allclose(red[:, 1:], torch.zeros_like(red[:, 1:]), atol=3)
    assert inspect_image_folder(tmp_path / "d").image_shape is None


def test_image_folder_skips_hidden_files(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "d", classes=(0, 1), per_class=2)
    (tmp_path / "d" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "d" / "digit-0" / "._000.png").write_bytes(b"junk")
    (tmp_path / "d" / "__MACOSX").mkdir()
    assert read_image_folder(tmp_path / "d").train_labels.tolist() == [0, 0, 1, 1]


def folder_refused(root: Path, *fragments: str, decode: bool = True, **kwargs: object) -> None:
    with pytest.raises(DataError) as caught:
        inspect_image_folder(root, decode=decode, **kwargs)
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message


def test_image_folder_defects(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "one", classes=(4,))
    folder_refused(tmp_path / "one", "one class ('digit-4')", "at least two")

    write_digits_folder(tmp_path / "empty", classes=(0, 1))
    (tmp_path / "empty" / "digit-2").mkdir()
    folder_refused(tmp_path / "empty", "digit-2 holds no PNG or JPEG images")

    write_digits_folder(tmp_path / "text", classes=(0, 1))
    (tmp_path / "text" / "digit-0" / "notes.txt").write_text("hello")
    folder_refused(tmp_path / "text", "notes.txt is not a PNG or JPEG")

    write_digits_folder(tmp_path / "loose", classes=(0, 1))
    flat = tmp_path / "flat"
    flat.mkdir()
    write_png(flat / "a.png", np.zeros((4, 4), np.uint8))
    folder_refused(flat, "no class folders", "a.png")

    write_digits_folder(tmp_path / "cut", classes=(0, 1))
    target = tmp_path / "cut" / "digit-1" / "002.png"
    target.write_bytes(target.read_bytes()[:60])
    folder_refused(tmp_path / "cut", "002.png")

    write_digits_folder(tmp_path / "fake", classes=(0, 1))
    (tmp_path / "fake" / "digit-0" / "x.png").write_bytes(b"GIF89a" + b"\x00" * 50)
    folder_refused(tmp_path / "fake", "x.png")

    write_digits_folder(tmp_path / "big", classes=(0, 1))
    folder_refused(tmp_path / "big", "more than the 32 an image may have", max_pixels=32)

    write_digits_folder(tmp_path / "unseen", split=True, classes=(0, 1))
    write_png(tmp_path / "unseen" / "test" / "digit-9" / "a.png", np.zeros((8, 8), np.uint8))
    folder_refused(tmp_path / "unseen", "test/digit-9 is a class that train/ does not have")

    folder_refused(tmp_path / "missing", "is missing")


def test_truncated_png_is_found_by_the_full_check_not_the_header_scan(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "d", classes=(0, 1))
    target = tmp_path / "d" / "digit-1" / "003.png"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2 + 20])  # header intact, image data cut
    assert inspect_image_folder(tmp_path / "d", decode=False).train_samples == 12
    folder_refused(tmp_path / "d", "003.png cannot be decoded", "truncated or corrupt")


# --------------------------------------------------------------------------- specs and the loader


def test_npz_spec_fills_the_model_from_the_file_and_loads_its_test_split(tmp_path: Path) -> None:
    from growth.data import load_dataset
    from growth.spec import parse_spec

    path = tmp_path / "digits.npz"
    arrays = write_digits_npz(path)
    spec = parse_spec({"method": "dense", "model": {"family": "vgg", "layers": [4]},
                       "data": {"name": "npz", "path": str(path), "val_fraction": 0.1}})
    assert spec.data["path"] == str(path) and "root" not in spec.data
    assert (spec.model["in_channels"], spec.model["num_classes"], spec.model["input_size"]) == (1, 10, [8, 8])

    splits = load_dataset(spec.data, seed=0)
    assert splits.test[0].shape == (len(arrays["y_test"]), 1, 8, 8)
    assert torch.equal(splits.test[1], torch.from_numpy(arrays["y_test"]))
    assert len(splits.train[1]) + len(splits.val[1]) == len(arrays["y"])
    assert splits.class_names[9] == "nine"
    # The [0, 1] pixels come back from the normalised tensors exactly as stored.
    std, mean = torch.tensor(splits.std).view(1, -1, 1, 1), torch.tensor(splits.mean).view(1, -1, 1, 1)
    restored = torch.round((splits.test[0] * std + mean) * 255).to(torch.uint8)
    assert torch.equal(restored[:, 0], torch.from_numpy(arrays["x_test"]))


def test_image_folder_spec_resizes_and_carves_a_test_split(tmp_path: Path) -> None:
    from growth.data import load_dataset
    from growth.spec import dataset_bytes, parse_spec

    write_digits_folder(tmp_path / "d", per_class=10, classes=(0, 1, 2))
    spec = parse_spec({"method": "dense", "model": {"family": "vgg", "layers": [4]},
                       "data": {"name": "image_folder", "path": str(tmp_path / "d"), "image_size": 12}})
    assert (spec.model["in_channels"], spec.model["num_classes"], spec.model["input_size"]) == (1, 3, [12, 12])
    splits = load_dataset(spec.data, seed=0)
    assert splits.input_shape == (1, 12, 12) and splits.class_names == ("digit-0", "digit-1", "digit-2")
    assert len(splits.test[1]) == 6  # 20% of 30, stratified
    assert dataset_bytes(spec.data) == 30 * 12 * 12 * 4


@pytest.mark.parametrize(("data", "field", "fragment"), [
    ({"name": "npz"}, "data.path", "need a path"),
    ({"name": "npz", "path": "x.npz", "root": "r"}, "data.root", "read from data.path"),
    ({"name": "digits", "path": "x.npz"}, "data.path", "only npz and image_folder"),
    ({"name": "npz", "path": "/no/such/file.npz"}, "data.path", "no file"),
])
def test_user_data_spec_errors(data: dict, field: str, fragment: str) -> None:
    from growth.errors import SpecError
    from growth.spec import parse_spec

    with pytest.raises(SpecError) as caught:
        parse_spec({"method": "dense", "model": {"family": "vgg", "layers": [4]}, "data": data})
    assert caught.value.field == field and fragment in caught.value.message


# --------------------------------------------------------------------------- starting from a grown network


SMALL_GROW = {
    "method": "grow", "seed": 0,
    "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
    "data": {"name": "digits", "val_fraction": 0.15},
    "train": {"epochs": 4, "batch_size": 128, "lr": 0.1},
    "optimizer": {"kappa": 1.0, "nu": 1.0, "lam": 0.5},
    "growth": {"every": 2, "threshold": 0.3, "add": 4, "max_width": 64, "finetune_epochs": 1},
}


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A grown VGG on digits and its weights as a netgrow safetensors file (model spec in the metadata)."""
    import json

    import growth
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("grown")
    torch.set_num_threads(1)
    result = growth.run(SMALL_GROW, checkpoint_dir=folder)
    assert any(change["change"] == "widen" for change in result["events"])
    state = torch.load(result["weights"], map_location="cpu", weights_only=True)
    weights = folder / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights),
              metadata={"model": json.dumps(result["final"]["model"]), "format": "netgrow"})
    return result, weights


def test_l1_prune_of_a_grown_network_prunes_it_first_and_records_where_it_came_from(grown: tuple[dict, Path]) -> None:
    import growth

    source, weights = grown
    widths = source["final"]["widths"]
    result = growth.run({
        "method": "l1_prune", "seed": 0, "init": {"weights": str(weights)},
        "data": SMALL_GROW["data"], "train": {"batch_size": 128},
        "prune": {"keep": {"conv1": 0.5}, "finetune_epochs": 1, "finetune_lr": 0.01},
    })
    assert result["spec"]["model"] == source["final"]["model"]
    assert result["init"] == {"weights": str(weights), "job": None}
    first, prune = result["events"][0], result["events"][1]
    assert first == {"epoch": -1, "change": "init", "units": {n: [w, w] for n, w in widths.items()}}
    assert prune["epoch"] == -1 and prune["units"]["conv1"] == [widths["conv1"], -(-widths["conv1"] // 2)]
    assert result["epochs"] == 1 and [row["phase"] for row in result["history"]] == ["finetune"]


def test_dense_from_a_grown_network_starts_from_its_weights(grown: tuple[dict, Path], tmp_path: Path) -> None:
    import growth

    source, weights = grown
    # A learning rate too small to move the weights: after one epoch they are still the source's.
    result = growth.run({"method": "dense", "seed": 0, "init": {"weights": str(weights)}, "data": SMALL_GROW["data"],
                         "train": {"epochs": 1, "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0,
                                   "batch_size": 128}}, checkpoint_dir=tmp_path)
    assert result["final"]["widths"] == source["final"]["widths"]
    started = torch.load(source["weights"], weights_only=True)
    ended = torch.load(result["weights"], weights_only=True)
    learned = [name for name in started if name.endswith(("weight", "bias"))]
    assert learned and all(torch.allclose(ended[n], started[n], atol=1e-6) for n in learned)


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"model": {"family": "vgg", "layers": [8, "M", 8]}}, "model.layers", "omit model"),
    ({"model": {"family": "resnet"}}, "model.family", "omit model"),
    ({"data": {"name": "digits", "image_size": 16}}, "data", "network in init takes 1×8×8"),
    ({"data": {"name": "synthetic", "channels": 1, "size": 8, "num_classes": 3}}, "data", "3 classes"),
    ({"init": {"job": "0b0e8a5e-0000-4000-8000-000000000000"}}, "init.job", "resolves it"),
    ({"init": {"weights": "/no/such.safetensors"}}, "init.weights", "no file"),
    ({"init": {"weights": "w", "extra": 1}}, "init.extra", "unknown field"),
])
def test_init_conflicts_are_named(grown: tuple[dict, Path], change: dict, field: str, fragment: str) -> None:
    from growth.errors import SpecError
    from growth.spec import parse_spec

    _, weights = grown
    spec = {"method": "dense", "init": {"weights": str(weights)}, "data": SMALL_GROW["data"], **change}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert caught.value.field == field and fragment in caught.value.message, caught.value


def test_init_from_a_file_that_is_not_netgrow_weights(tmp_path: Path) -> None:
    from growth.errors import SpecError
    from growth.spec import parse_spec
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    for path, fragment in ((plain, "no netgrow model spec"), (junk, "not a readable safetensors")):
        with pytest.raises(SpecError) as caught:
            parse_spec({"method": "dense", "init": {"weights": str(path)}, "data": {"name": "digits"}})
        assert caught.value.field == "init.weights" and fragment in caught.value.message
