"""Image-folder data sets: your own PNG or JPEG images, one sub-folder per class (torchvision's ImageFolder layout).

    DIR/train/<class>/*.png    DIR/test/<class>/*.png      both splits, or
    DIR/<class>/*.png                                       one set of images serving as both

Classes are the sub-folder names in sorted order, as ImageFolder numbers them. Images are decoded
with Pillow once per process into uint8 tensors like the IDX sets: (N, H, W) when every image is
grey, else (N, 3, H, W). All images must share one size: a model takes one input shape.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError

SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_PIXELS = 4096 * 4096  # per image, checked from its header before decoding: 30 PNGs of 9000x9000 took 9.8 GB
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
              Image.DecompressionBombWarning)  # how Pillow reports damaged files and text-chunk or ICC bombs


def read_image_folder(folder: Path, name: str):
    """Return the Dataset an image folder holds."""
    from .data import Dataset

    split = (folder / "train").is_dir() and (folder / "test").is_dir()
    splits = (folder / "train", folder / "test") if split else (folder,)
    classes = sorted(p.name for p in splits[-1].iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{folder} has no class sub-folders; put each class's images in DIR/<class>/ "
                        "(or DIR/train/<class>/ and DIR/test/<class>/)")
    (train_x, train_y), (test_x, test_y) = [_read_split(s, classes) for s in splits] * (1 if split else 2)  # one decode
    if train_x.shape[1:] != test_x.shape[1:]:
        raise UserError(f"{folder}: training images are {tuple(train_x.shape[1:])}, test images "
                        f"{tuple(test_x.shape[1:])}; resize them to one size")
    return Dataset(name, train_x, train_y, test_x, test_y, tuple(classes))


def _read_split(split: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    arrays, labels, size = [], [], None
    for label, cls in enumerate(classes):
        files = sorted(p for p in (split / cls).glob("*") if p.suffix.lower() in SUFFIXES) if (split / cls).is_dir() else []
        for path in files:
            array = _decode(path, size)
            size = (array.shape[1], array.shape[0])
            arrays.append(array)
            labels.append(label)
    if not arrays:
        raise UserError(f"{split} holds no PNG or JPEG images in its class folders ({', '.join(classes)})")
    if any(a.ndim == 3 for a in arrays):  # one colour image makes the set colour; grey ones repeat their level
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    stacked = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3)
    return (stacked if stacked.dim() == 3 else stacked.permute(0, 3, 1, 2).contiguous()), torch.tensor(labels)


def _decode(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Return one image as uint8 (H, W) if grey, else (H, W, 3); its header is checked before it is decoded."""
    if not path.is_file():
        raise UserError(f"{path} is not a regular file (a FIFO, a device, a broken link); remove it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if image.format not in ("PNG", "JPEG"):
                raise UserError(f"{path} is a {image.format} image, whatever its name; convert it to PNG")
            if image.width * image.height > MAX_PIXELS:
                raise UserError(f"{path} is {image.width}x{image.height}, over the {MAX_PIXELS:,} pixels convlens "
                                "reads; scale it down")
            if size is not None and image.size != size:
                raise UserError(f"{path} is {image.width}x{image.height}, other images are {size[0]}x{size[1]}; "
                                "resize the images to one size")
            image = eight_bit(image)
            return np.asarray(image.convert("L" if is_grey(image) else "RGB"))
    except Image.DecompressionBombError as e:  # Pillow refuses past 179M pixels on opening, before our check
        raise UserError(f"{path} is far over the {MAX_PIXELS:,} pixels convlens reads ({str(e)[:60]}); "
                        "scale it down") from None
    except UNREADABLE as e:
        raise UserError(f"cannot read image {path} ({type(e).__name__}: {str(e)[:100]}); remove or replace it") from None


def eight_bit(image: Image.Image) -> Image.Image:
    """Return the image with 16- or 32-bit grey scaled to 8 bits (Pillow's own convert clips it); others as they are."""
    if not image.mode.startswith("I"):
        return image
    values = np.asarray(image).astype(np.int64)  # a 16-bit PNG opens as I;16 or I, 0..65535
    return Image.fromarray(((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8), mode="L")


def is_grey(image: Image.Image) -> bool:
    """Whether an image holds grey levels only: a grey mode, or a palette whose every colour is a grey."""
    if image.mode in ("1", "L", "LA"):
        return True
    if image.mode in ("P", "PA"):
        palette = np.asarray(image.getpalette() or [0, 0, 0]).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return False
