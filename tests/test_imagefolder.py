"""Image folders: real MNIST digits written as PNG and JPEG files, one sub-folder per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.data import load_dataset
from convlens.errors import UserError

NAMES = ("four", "nine")  # sorted: class 0 is "four", as ImageFolder numbers them


def write_folder(root, mnist, colour: bool = False, split: bool = True, count: int = 6):
    """Write the first `count` 4s and 9s of the MNIST test set as PNGs into root/(train|test)/<class>/."""
    for part in (("train", "test") if split else ("",)):
        for name, digit in zip(NAMES, (4, 9)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(torch.nonzero(mnist.test_labels == digit).flatten()[:count].tolist()):
                grey = mnist.test_images[i].numpy()
                image = Image.fromarray(np.stack([grey, grey[:, ::-1], 255 - grey], 2)) if colour else Image.fromarray(grey)
                image.save(folder / f"{k}.png")
    return root


def test_a_grey_image_folder_reads_like_an_idx_set(mnist, tmp_path):
    ds = load_dataset(str(write_folder(tmp_path / "grey", mnist)))
    fours = torch.nonzero(mnist.test_labels == 4).flatten()[:6]
    assert ds.class_names == NAMES and ds.image_shape == (1, 28, 28) and ds.test_images.dtype == torch.uint8
    assert torch.equal(ds.test_images[:6], mnist.test_images[fours]) and ds.test_labels.tolist() == [0] * 6 + [1] * 6


def test_a_colour_folder_without_splits_gives_three_channels(mnist, tmp_path):
    ds = load_dataset(str(write_folder(tmp_path / "rgb", mnist, colour=True, split=False)))
    four = mnist.test_images[torch.nonzero(mnist.test_labels == 4).flatten()[0]]
    assert ds.image_shape == (3, 28, 28) and len(ds.train_labels) == len(ds.test_labels) == 12
    assert torch.equal(ds.test_images[0, 0], four) and torch.equal(ds.test_images[0, 1], four.flip(-1))


def test_bad_image_folders_are_one_clear_error(mnist, tmp_path):
    root = write_folder(tmp_path / "mixed", mnist, split=False)
    Image.new("L", (32, 32)).save(root / "nine" / "big.png")
    with pytest.raises(UserError, match="is 32x32, other images are 28x28; resize the images to one size"):
        load_dataset(str(root))
    (root / "nine" / "big.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image .*big.png"):
        load_dataset(str(root))
    (tmp_path / "flat").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "flat" / "a.png")
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(UserError, match="holds no PNG or JPEG images"):
        load_dataset(str(tmp_path / "flat"))


def test_a_colour_model_imports_with_an_image_folder_and_its_class_count_is_checked(mnist, tmp_path):
    from torch import nn

    from convlens.jobs.import_model import import_model
    from convlens.runs import load_run

    folder = str(write_folder(tmp_path / "rgb", mnist, colour=True))
    torch.manual_seed(0)
    two = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 2))
    with pytest.raises(UserError, match="the model ends in 10 outputs but .* has 2 classes"):
        import_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)), folder,
                     tmp_path / "ten")
    run = load_run(import_model(two, folder, tmp_path / "run").files[0].parent)
    assert run.class_names == NAMES and run.layers.input_shape == (3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(run.model(run.test_inputs), two(run.test_inputs), atol=1e-5)
