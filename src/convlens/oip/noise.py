"""Seeded multi-scale noise: the start images of OIP searches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALES = (28, 14, 7, 4)  # grid sizes in pixels of the noise layers, fine to coarse


def multiscale_noise(n: int, seed: int = 0, size: int = 28, scales=SCALES, mean: float = 0.5,
                     std: float = 0.15) -> torch.Tensor:
    """Return n images (n, 1, size, size) in [0, 1]: noise fluctuating on several length scales.

    Each layer is Gaussian noise on a coarse grid, upsampled bilinearly, so a start holds blobs of
    about 7 and 4 pixels as well as single-pixel grain. Deep maps with large receptive fields respond
    to structure at their own scale; pure pixel noise often leaves them silent. The layers are
    summed with equal weight and rescaled to the given mean and spread, then clamped to the data range.
    """
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(n, 1, size, size)
    for s in scales:
        layer = torch.randn(n, 1, s, s, generator=g)
        total += layer if s == size else F.interpolate(layer, size=(size, size), mode="bilinear", align_corners=False)
    flat = total.flatten(1)
    total = (total - flat.mean(1).view(-1, 1, 1, 1)) / flat.std(1).view(-1, 1, 1, 1)
    return (mean + std * total).clamp(0.0, 1.0)
