"""IDX reading and validation, the registry, splits and fetching."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from conftest import write_idx, write_idx_folder
from convlens import fetch as fetch_module
from convlens.data import Dataset, find_idx_files, load_dataset, read_dataset_folder, read_idx
from convlens.errors import UserError


def _toy(n_train=12, n_test=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % classes,
        rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % classes,
    )


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_plain_and_gz(tmp_path, gz):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = write_idx(tmp_path / ("x.gz" if gz else "x"), array, gz=gz)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: b"\x01" + raw[1:], "bad magic number"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "IDX type 0x0d"),
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00", "longer than its header says"),
        (lambda raw: raw[:6], "truncated IDX header"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mutate, message):
    path = write_idx(tmp_path / "x", np.zeros((3, 28, 28)))
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(UserError, match=message):
        read_idx(path)


def test_read_idx_rejects_broken_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02ab")[:-6])
    with pytest.raises(UserError, match="cannot read"):
        read_idx(path)


def test_idx_folder_loads_as_uint8_tensors_with_numeric_class_names(tmp_path):
    tx, ty, vx, vy = _toy()
    write_idx_folder(tmp_path, tx, ty, vx, vy, gz=True)
    ds = load_dataset(f"idx:{tmp_path}")
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (12, 28, 28)
    assert ds.train_labels.dtype == torch.int64
    assert torch.equal(ds.test_images, torch.from_numpy(vx.astype(np.uint8)))
    assert ds.class_names == ("0", "1", "2")


def test_count_mismatch_is_reported(tmp_path):
    tx, ty, vx, vy = _toy()
    write_idx_folder(tmp_path, tx, ty[:-1], vx, vy)
    with pytest.raises(UserError, match="12 train images but 11 labels"):
        read_dataset_folder(tmp_path, "toy")


def test_wrong_image_shape_is_reported(tmp_path):
    tx, ty, vx, vy = _toy()
    write_idx_folder(tmp_path, np.zeros((12, 32, 32)), ty, vx, vy)
    with pytest.raises(UserError, match=r"images have shape \(4, 28, 28\), expected \(N, H, W\) or \(N, C, H, W\) with 1 or 3 channels, like the training images \(12, 32, 32\)"):
        read_dataset_folder(tmp_path, "toy")


def test_label_out_of_range_is_reported(tmp_path):
    tx, ty, vx, vy = _toy()
    ty[3] = 10
    write_idx_folder(tmp_path, tx, ty, vx, vy)
    with pytest.raises(UserError, match="label 10 is out of range for 10 classes"):
        read_dataset_folder(tmp_path, "toy", class_names=tuple("0123456789"))


def test_missing_and_ambiguous_files_are_reported(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        find_idx_files(tmp_path / "nowhere")
    write_idx_folder(tmp_path, *_toy())
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="expected one test labels IDX file, found no file"):
        find_idx_files(tmp_path)
    write_idx_folder(tmp_path, *_toy())
    shutil.copy(tmp_path / "train-images-idx3-ubyte", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(UserError, match="found 2 files"):
        find_idx_files(tmp_path)


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(UserError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist, idx:DIR"):
        load_dataset("cifar")


def test_split_holds_out_the_last_images():
    images = torch.arange(10).reshape(10, 1, 1).expand(10, 28, 28).to(torch.uint8)
    ds = Dataset("toy", images, torch.arange(10), images[:2], torch.arange(2), tuple("0123456789"))
    (tx, ty), (vx, vy) = ds.split(3)
    assert ty.tolist() == list(range(7)) and vy.tolist() == [7, 8, 9]
    (tx, ty), (vx, vy) = ds.split(0)
    assert len(ty) == 10 and len(vy) == 0
    with pytest.raises(UserError, match="val_size 10 must be between 0 and 9"):
        ds.split(10)


def test_real_mnist_counts_labels_and_first_test_digits(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    # The first test digits of the original MNIST files: 7 2 1 0 4 1 4 9 5 9.
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(mnist.train_labels).tolist()[:3] == [5923, 6742, 5958]


def test_fashion_mnist_has_named_balanced_classes():
    from conftest import require_installed

    require_installed("fashion-mnist")
    ds = load_dataset("fashion-mnist")
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10


def test_fetch_is_idempotent_and_verifies(mnist):
    messages = []
    fetch_module.fetch("mnist", log=messages.append)
    assert messages == [f"mnist: already installed and verified in {fetch_module.data_dir() / 'mnist'}"]


def _fake_source(installed, corrupt: bool):
    """A source that copies the installed MNIST files, then either corrupts one or dies half-way."""

    def source(work, staging):
        names = list(fetch_module.CHECKSUMS["mnist"])
        shutil.copy(installed / names[0], staging / names[0])
        if not corrupt:
            raise KeyboardInterrupt  # the user gives up half-way
        for name in names[1:]:
            shutil.copy(installed / name, staging / name)
        with (staging / names[1]).open("r+b") as f:
            f.seek(100)
            f.write(b"\xff")

    return source


@pytest.mark.parametrize("corrupt", [True, False])
def test_failed_fetch_leaves_no_complete_looking_folder(mnist, tmp_path, monkeypatch, corrupt):
    monkeypatch.setitem(fetch_module.SOURCES, "mnist", _fake_source(fetch_module.data_dir() / "mnist", corrupt))
    monkeypatch.setenv("CONVLENS_DATA", str(tmp_path))
    with pytest.raises(UserError if corrupt else KeyboardInterrupt, match="sha256" if corrupt else None):
        fetch_module.fetch("mnist", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []  # no mnist folder, no staging leftovers
