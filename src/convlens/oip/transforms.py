"""Transform robustness: what an OIP must survive each step, as Lucid and Lucent make it (jitter, pad, scale,
rotate), so the pattern found is one the map sees wherever and however large it is, not one exact pixel grid.

Each transform is a callable on a (B, C, H, W) batch, drawn from its own seeded generator (the same seed,
the same OIPs); `robust(side, generator)` is Lucid's standard list, scaled from its 224-pixel images to
`side`, and ends by cropping back to `side`, since many models take only their own input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Jitter:
    """Shift the image by up to `shift` pixels each step (Lucent's `jitter`), wrapping round the edges."""

    def __init__(self, shift: int, generator: torch.Generator):
        self.shift, self.generator = shift, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dy, dx = torch.randint(-self.shift, self.shift + 1, (2,), generator=self.generator).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class Pad:
    """A border of grey (0.5), so jitter and rotation bring in no edge the map could key on."""

    def __init__(self, width: int, value: float = 0.5):
        self.width, self.value = width, value

    def __call__(self, x):
        return F.pad(x, [self.width] * 4, value=self.value)


class RandomScale:
    """Resize by a factor drawn from `scales` (bilinear)."""

    def __init__(self, scales: list[float], generator: torch.Generator):
        self.scales, self.generator = scales, generator

    def __call__(self, x):
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=self.generator))]
        size = [math.ceil(scale * d) for d in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class RandomRotate:
    """Rotate about the centre by an angle in degrees drawn from `angles` (bilinear, zeros outside)."""

    def __init__(self, angles: list[float], generator: torch.Generator):
        self.angles, self.generator = angles, generator

    def __call__(self, x):
        angle = math.radians(self.angles[int(torch.randint(len(self.angles), (1,), generator=self.generator))])
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class CenterCrop:
    """Back to `side` x `side`: padding and scaling changed the size, and a model with a dense head takes only its own."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, x):
        h, w = x.shape[-2:]
        if (h, w) == (self.side, self.side):
            return x
        if min(h, w) < self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
            return x
        top, left = (h - self.side) // 2, (w - self.side) // 2
        return x[..., top:top + self.side, left:left + self.side]


def robust(side: int, generator: torch.Generator) -> list:
    """Lucid's standard transforms (pad 12, jitter 8, scale 0.9-1.1, rotate -10 to 10 degrees, jitter 4) for
    224-pixel images, with the pixel sizes scaled to `side`, then a crop back to `side`."""
    pixels = lambda n: max(1, round(n * side / 224))  # noqa: E731
    return [Pad(pixels(12)), Jitter(pixels(8), generator), RandomScale([1 + (i - 5) / 50 for i in range(11)], generator),
            RandomRotate(list(range(-10, 11)) + 5 * [0], generator), Jitter(pixels(4), generator), CenterCrop(side)]
