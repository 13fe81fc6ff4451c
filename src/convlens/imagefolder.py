"""Image-folder data sets: your own PNG or JPEG images, one sub-folder per class (torchvision's ImageFolder layout).

    DIR/train/<class>/*.png    DIR/test/<class>/*.png      both splits, or
    DIR/<class>/*.png                                       one set of images serving as both

Classes are the sub-folder names in sorted order, as ImageFolder numbers them. Images are decoded
with Pillow once per process into uint8 tensors like the IDX sets: (N, H, W) when every image is
grey, else (N, 3, H, W). All images must share one size: a model takes one input shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError

SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_image_folder(folder: Path, name: str):
    """Return the Dataset an image folder holds."""
    from .data import Dataset

    splits = (folder / "train", folder / "test") if (folder / "train").is_dir() and (folder / "test").is_dir() \
        else (folder, folder)
    classes = sorted(p.name for p in splits[1].iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{folder} has no class sub-folders; put each class's images in DIR/<class>/ "
                        "(or DIR/train/<class>/ and DIR/test/<class>/)")
    (train_x, train_y), (test_x, test_y) = (_read_split(split, classes) for split in splits)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise UserError(f"{folder}: training images are {tuple(train_x.shape[1:])}, test images "
                        f"{tuple(test_x.shape[1:])}; resize them to one size")
    return Dataset(name, train_x, train_y, test_x, test_y, tuple(classes))


def _read_split(split: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, size = [], [], None
    for label, cls in enumerate(classes):
        files = sorted(p for p in (split / cls).glob("*") if p.suffix.lower() in SUFFIXES) if (split / cls).is_dir() else []
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
            except (UnidentifiedImageError, OSError) as e:
                raise UserError(f"cannot read image {path} ({e}); remove or replace it") from None
            if size is not None and image.size != size:
                raise UserError(f"{path} is {image.size[0]}x{image.size[1]}, other images are {size[0]}x{size[1]}; "
                                "resize the images to one size")
            size = image.size
            images.append(image)
            labels.append(label)
    if not images:
        raise UserError(f"{split} holds no PNG or JPEG images in its class folders ({', '.join(classes)})")
    grey = all(image.mode in ("L", "1", "I;16") for image in images)
    arrays = [np.asarray(image.convert("L" if grey else "RGB")) for image in images]
    stacked = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3)
    return (stacked if grey else stacked.permute(0, 3, 1, 2).contiguous()), torch.tensor(labels)
