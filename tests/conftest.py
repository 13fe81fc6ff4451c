"""Shared fixtures: IDX writing, a small real-MNIST subset, and tiny training configs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convlens.config import RunConfig
from convlens.data import REGISTRY, data_dir, load_dataset

SMALL_TRAIN, SMALL_TEST = 2048, 512


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_idx_folder(folder: Path, train_x, train_y, test_x, test_y, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", train_x, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", train_y, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", test_x, gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", test_y, gz)
    return folder


def require_installed(name: str) -> None:
    if not (data_dir() / REGISTRY[name].folder).is_dir():
        pytest.fail(f"{name} is not installed in {data_dir()}; run `make data` (convlens data fetch all) first")


@pytest.fixture(scope="session")
def mnist():
    require_installed("mnist")
    return load_dataset("mnist")


@pytest.fixture(scope="session")
def small_mnist(mnist, tmp_path_factory) -> str:
    """Return the dataset name idx:DIR of a real MNIST subset: 2048 training and 512 test images."""
    folder = tmp_path_factory.mktemp("small-mnist")
    write_idx_folder(
        folder,
        mnist.train_images[:SMALL_TRAIN].numpy(), mnist.train_labels[:SMALL_TRAIN].numpy(),
        mnist.test_images[:SMALL_TEST].numpy(), mnist.test_labels[:SMALL_TEST].numpy(),
    )
    return f"idx:{folder}"


def mnist_32(mnist, folder: Path, channels: int) -> str:
    """Write a small MNIST subset padded to 32x32, grey or in colour, and return its dataset name idx:DIR.

    Colour: red is the digit, green its mirror image, blue its negative, so all three channels matter.
    """
    import torch.nn.functional as F

    def make(images):
        grey = F.pad(images, (2, 2, 2, 2))  # (N, 32, 32)
        return (grey if channels == 1 else torch.stack([grey, grey.flip(-1), 255 - grey], 1)).numpy()

    write_idx_folder(folder, make(mnist.train_images[:SMALL_TRAIN]), mnist.train_labels[:SMALL_TRAIN].numpy(),
                     make(mnist.test_images[:SMALL_TEST]), mnist.test_labels[:SMALL_TEST].numpy())
    return f"idx:{folder}"


@pytest.fixture
def tiny_config(small_mnist) -> RunConfig:
    """A quick run on the small subset: 2 epochs of 28 steps (about 2 s)."""
    return RunConfig().replace(
        data={"dataset": small_mnist, "val_size": 256},
        train={"epochs": 2, "batch_size": 64, "lr": 0.1, "precision": "fp32"},
    )


@pytest.fixture(scope="session")
def trained_run(small_mnist, tmp_path_factory):
    """Return the folder of a `simple` run trained for 2 epochs on the small subset (about 93% accurate)."""
    from convlens.training import train

    run = tmp_path_factory.mktemp("trained") / "run"
    config = RunConfig().replace(data={"dataset": small_mnist, "val_size": 256},
                                 train={"epochs": 2, "batch_size": 64, "lr": 0.1, "precision": "fp32"})
    train(config, out=run)
    return run


def copy_run(source: Path, destination: Path) -> Path:
    """Copy what training wrote (files and plots/), leaving out what other tests' inspections added."""
    import shutil

    shutil.copytree(source, destination, ignore=lambda folder, names: [
        n for n in names if folder == str(source) and (source / n).is_dir() and n != "plots"])
    return destination


def untrained_run(folder: Path, dataset: str) -> Path:
    """Write a run folder of an untrained `simple` for a data set: enough for pages that only need a model."""
    from convlens import runs
    from convlens.models import build_model

    config = RunConfig().replace(data={"dataset": dataset})
    runs.write_json(folder / runs.CONFIG, config.to_dict())
    runs.save_weights(folder / runs.WEIGHTS, build_model("simple"), config)
    return folder


@pytest.fixture(scope="session")
def mnist_run(mnist, tmp_path_factory) -> Path:
    """Return a run folder `fast-mnist` of the fast recipe (one epoch) on all of MNIST (~99.1%, ~5 s)."""
    from convlens.config import RECIPES
    from convlens.jobs.train import train_run

    run = tmp_path_factory.mktemp("runs") / "fast-mnist"
    sections = {name: dict(fields) for name, fields in RECIPES["fast"].items()}
    sections["train"] = sections.get("train", {}) | {"epochs": 1}
    train_run(RunConfig().replace(**sections), run, progress=False)
    return run


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Return the folder test artifacts (screenshots) are kept in: $CONVLENS_ARTIFACTS or ./artifacts."""
    import os

    folder = Path(os.environ.get("CONVLENS_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def keras_run(tmp_path_factory, mnist) -> Path:
    """The articles' net as Keras saved it (fixtures/keras/articles.keras), imported by `convlens import` in a
    second process, as a user would."""
    out = tmp_path_factory.mktemp("imported") / "articles-keras"
    keras_file = Path(__file__).resolve().parent / "fixtures" / "keras" / "articles.keras"
    done = subprocess.run([sys.executable, "-m", "convlens", "import", str(keras_file), "--dataset", "mnist",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out
