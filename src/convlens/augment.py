"""Batched data augmentation on the training device: one grid_sample per batch, no per-image Python.

Random draws are made on the CPU from the epoch's seeded generator and moved to the device, so a
run augments identically on CPU and CUDA and replays exactly on --resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_SHIFT = 2.0 / 14  # 2 pixels, in grid units (the image spans [-1, 1], 14 pixels per unit)
MAX_ROTATION = math.radians(10)
MAX_SCALE = 0.1  # zoom between 0.9x and 1.1x
ELASTIC_GRID = 4  # displacement field drawn on a 4x4 grid and smoothed by upsampling: strokes bend, not break
ELASTIC_SIZE = 1.5 / 14  # displacement spread, 1.5 pixels


def augment(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """Return a randomly transformed copy of images x (B, 1, H, W); 'none' returns x itself.

    shift: up to 2 px each way; flip: shift plus a mirror image half the time (clothes, never digits); affine: shift plus rotation up to 10 degrees and scale 0.9-1.1;
    elastic: affine plus a smooth random displacement, as in Simard et al. (2003) for MNIST.
    """
    if kind == "none":
        return x
    b = len(x)
    r = torch.rand(b, 5, generator=g) * 2 - 1  # shift x, shift y, rotation, scale, mirror, in [-1, 1]
    warp = kind in ("affine", "elastic")
    angle = r[:, 2] * MAX_ROTATION if warp else torch.zeros(b)
    scale = 1 + r[:, 3] * MAX_SCALE if warp else torch.ones(b)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, r[:, 0] * MAX_SHIFT], 1),
                         torch.stack([sin, cos, r[:, 1] * MAX_SHIFT], 1)], 1)  # (B, 2, 3)
    if kind == "flip":  # sampling x from -x mirrors the image
        theta[:, :, 0] *= torch.where(r[:, 4] < 0, -1.0, 1.0)[:, None]
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    if kind == "elastic":
        field = torch.randn(b, 2, ELASTIC_GRID, ELASTIC_GRID, generator=g) * ELASTIC_SIZE
        field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, side: int, g: torch.Generator) -> torch.Tensor:
    """Return images with one random side x side square set to zero each (DeVries & Taylor 2017); 0 = off.

    The square's centre may lie anywhere, so part of it can fall outside the image, as in the paper.
    """
    if side <= 0:
        return x
    h, w = x.shape[-2:]
    centre = (torch.rand(len(x), 2, generator=g) * torch.tensor([h, w])).floor().to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = (centre - side // 2).unbind(1)
    inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))
    return x * (~inside).unsqueeze(1).to(x.dtype)
