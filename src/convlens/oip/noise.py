"""Seeded multi-scale noise: the start images of OIP searches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import MNIST_SHAPE

SCALES = (1, 2, 4, 7)  # the image side divided by these is each noise layer's grid: 1 px to a seventh of the image


def multiscale_noise(n: int, seed: int = 0, shape: tuple[int, int, int] = MNIST_SHAPE, scales=SCALES,
                     mean: float = 0.5, std: float = 0.15) -> torch.Tensor:
    """Return n images (n, C, H, W) in [0, 1]: noise fluctuating on several length scales.

    Each layer is Gaussian noise on a coarse grid, upsampled bilinearly, so a start holds blobs of
    about a quarter and a seventh of the image as well as single-pixel grain. Deep maps with large receptive fields respond
    to structure at their own scale; pure pixel noise often leaves them silent. The layers are
    summed with equal weight and rescaled to the given mean and spread, then clamped to the data range.
    """
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    total = torch.zeros(n, c, h, w)
    for divisor in scales:
        grid = (max(1, round(h / divisor)), max(1, round(w / divisor)))
        layer = torch.randn(n, c, *grid, generator=g)
        total += layer if grid == (h, w) else F.interpolate(layer, size=(h, w), mode="bilinear", align_corners=False)
    flat = total.flatten(1)
    total = (total - flat.mean(1).view(-1, 1, 1, 1)) / flat.std(1).view(-1, 1, 1, 1)
    return (mean + std * total).clamp(0.0, 1.0)
