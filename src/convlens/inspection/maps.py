"""Feature maps, class-mean patterns, separating maps and the top-activating examples of each map.

All functions take float images (N, C, H, W) in [0, 1] and return tensors; none draws. Layers are
named as in the model's layer table (layers.py); the default is every map layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..layers import layer_table
from ..progress import track
from ..speed import inference_batch
from .hooks import capture


def _as_maps(t: torch.Tensor) -> torch.Tensor:
    """Return layer output as contiguous maps (B, C, H, W); a vector layer (B, F) becomes F maps of 1x1.

    Models run channels-last (speed.for_inference); every reader after this one walks a map's pixels,
    which a channels-last tensor scatters C floats apart (ResNet50's maps: a min took twice as long).
    """
    return (t if t.dim() == 4 else t.reshape(t.shape[0], -1, 1, 1)).contiguous()


@torch.no_grad()
def feature_maps(model: nn.Module, images: torch.Tensor, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Return {layer: maps (B, C, H, W)} for the images; default: every map layer in forward order."""
    layers = layers or layer_table(model, tuple(images.shape[1:])).map_layers
    was_training = model.training
    model.eval()
    try:
        with capture(model, layers) as out:
            model(images)
    finally:
        model.train(was_training)
    return {name: _as_maps(out[name]) for name in layers}


def iter_maps(model: nn.Module, images: torch.Tensor, layer: str, batch_size: int | None = None):
    """Yield (start, maps (B, C, H, W)) of one layer over the images, batch by batch, with a bar on a terminal."""
    batch_size = batch_size or inference_batch(images.shape[1:])
    for start in track(range(0, len(images), batch_size), f"{layer} maps of {len(images):,} images",
                       weight=lambda start: min(batch_size, len(images) - start)):
        yield start, feature_maps(model, images[start : start + batch_size], [layer])[layer]


@dataclass
class ClassPatterns:
    """Per-class statistics of one layer's maps over a set of images."""

    layer: str
    mean_maps: torch.Tensor  # (K, C, H, W) class-mean map
    mean_activation: torch.Tensor  # (K, C) class mean of each map's spatial mean
    fire_rate: torch.Tensor  # (K, C) share of a class's images where the map is > 0 anywhere
    image_means: torch.Tensor  # (N, C) each image's spatial mean per map
    labels: torch.Tensor  # (N,)

    def never_fires(self) -> dict[int, list[int]]:
        """Return, for each class, the maps that are zero everywhere on all its images."""
        return {k: torch.nonzero(self.fire_rate[k] == 0).flatten().tolist() for k in range(len(self.fire_rate))}

    def separation(self, a: int, b: int) -> torch.Tensor:
        """Return each map's effect size (Cohen's d) between classes a and b: (mean_a - mean_b) / pooled sd."""
        xa, xb = self.image_means[self.labels == a], self.image_means[self.labels == b]
        if len(xa) < 2 or len(xb) < 2:
            raise UserError(f"classes {a} and {b} need at least two images each to compare")
        pooled = ((xa.var(0) * (len(xa) - 1) + xb.var(0) * (len(xb) - 1)) / (len(xa) + len(xb) - 2)).sqrt()
        d = (xa.mean(0) - xb.mean(0)) / pooled.clamp(min=1e-8)
        return torch.where(pooled > 0, d, torch.zeros_like(d))  # a map constant on both classes separates nothing


@torch.no_grad()
def class_patterns(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layer: str,
                   num_classes: int | None = None, batch_size: int | None = None) -> ClassPatterns:
    """Return the class-mean maps and firing statistics of one layer (the articles' FCPs)."""
    num_classes = num_classes or int(labels.max()) + 1
    sums = image_means = fires = None
    for start, maps in iter_maps(model, images, layer, batch_size):
        y = labels[start : start + len(maps)]
        if sums is None:
            sums = torch.zeros(num_classes, *maps.shape[1:])
            image_means = torch.zeros(len(images), maps.shape[1])
            fires = torch.zeros(num_classes, maps.shape[1])
        sums.index_add_(0, y, maps)
        image_means[start : start + len(maps)] = maps.mean((2, 3))
        fires.index_add_(0, y, (maps.amax((2, 3)) > 0).float())
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    mean_maps = sums / counts[:, None, None, None]
    return ClassPatterns(layer, mean_maps, mean_maps.mean((2, 3)), fires / counts[:, None], image_means, labels)


@dataclass
class TopActivations:
    """The k images that drive each map of a layer hardest, strongest first."""

    layer: str
    values: torch.Tensor  # (C, k) the map's maximum over positions
    indices: torch.Tensor  # (C, k) image index into the images given
    positions: torch.Tensor  # (C, k, 2) (row, col) of that maximum in the map


class RunningTop:
    """The k images that drive each map of a layer hardest among those seen so far, fed batch by batch."""

    def __init__(self, layer: str, k: int):
        self.layer, self.k = layer, k
        self._v = self._i = self._p = None
        self._width = 1

    def add(self, start: int, maps: torch.Tensor) -> None:
        """Take the maps (B, C, H, W) of images start .. start + B - 1 into the running best."""
        b, c, h, w = maps.shape
        if self._v is None:  # the running best starts empty: (C, 0)
            self._v = maps.new_empty(c, 0)
            self._i = self._p = torch.empty(c, 0, dtype=torch.long)
            self._width = w
        flat_v, flat_p = maps.reshape(b, c, h * w).max(2)  # (B, C) each image's peak and where
        v = torch.cat([self._v, flat_v.T], 1)  # (C, k + B)
        i = torch.cat([self._i, torch.arange(start, start + b).expand(c, b)], 1)
        p = torch.cat([self._p, flat_p.T], 1)
        # A stable sort keeps earlier images first among equal values, so results are deterministic.
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : self.k]
        self._v, self._i, self._p = v.gather(1, order), i.gather(1, order), p.gather(1, order)

    def result(self) -> TopActivations:
        positions = torch.stack([self._p // self._width, self._p % self._width], dim=2)
        return TopActivations(self.layer, self._v, self._i, positions)


@torch.no_grad()
def top_activations(model: nn.Module, images: torch.Tensor, layer: str, k: int = 9, batch_size: int | None = None) -> TopActivations:
    """Return, for every map of a layer, the k images with the highest activation anywhere in the map."""
    if not 1 <= k <= len(images):
        raise UserError(f"k must be between 1 and the number of images ({len(images)})")
    running = RunningTop(layer, k)
    for start, maps in iter_maps(model, images, layer, batch_size):
        running.add(start, maps)
    return running.result()
