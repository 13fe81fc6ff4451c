"""Kernels: a layer's learned weights, and classic hand-set filters to set beside them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .hooks import layer_module

# Classic 3x3 image filters; a learned conv1 kernel is the same kind of object with learned weights.
CLASSIC_KERNELS: dict[str, list[list[float]]] = {
    "sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "scharr x": [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]],
    "scharr y": [[-3, -10, -3], [0, 0, 0], [3, 10, 3]],
    "blur": [[1 / 9] * 3] * 3,
    "gaussian": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
}


def conv_weight(model: nn.Module, layer: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (weight (out, in, kh, kw), bias) of a conv layer, given the block or the Conv2d name."""
    module = layer_module(model, layer)
    kinds = (nn.Conv2d, nn.ConvTranspose2d)
    conv = module if isinstance(module, kinds) else getattr(module, "conv", None)
    if not isinstance(conv, kinds):
        raise UserError(f"layer '{layer}' is not a convolution; kernels exist only for conv layers")
    weight = conv.weight.detach().cpu()
    if isinstance(conv, nn.ConvTranspose2d):  # kept (in, out / groups, kh, kw): each output's kernels, as a conv's
        weight = weight.unflatten(0, (conv.groups, -1)).transpose(1, 2).flatten(0, 1)
    return weight, None if conv.bias is None else conv.bias.detach().cpu()


def kernel_norms(weight: torch.Tensor) -> torch.Tensor:
    """Return the L2 norm of each (output, input) kernel slice: (out, in), how much each input map feeds each output."""
    return weight.flatten(2).norm(dim=2)


def classic_kernels() -> torch.Tensor:
    """Return the classic filters as a weight tensor (K, 1, 3, 3) in CLASSIC_KERNELS order."""
    return torch.tensor(list(CLASSIC_KERNELS.values()), dtype=torch.float32).unsqueeze(1)


def apply_kernels(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Return the plain convolution of one image (1, 1, H, W) with kernels (K, 1, k, k): (K, H-k+1, W-k+1)."""
    return F.conv2d(image, weight, bias)[0]
