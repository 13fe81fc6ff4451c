"""Permute the maps of a conv layer consistently through a convlens network.

Reordering conv k's output channels, its batch norm, and the input channels of whatever reads them
next (the next conv, or the first dense layer through flatten) leaves every prediction unchanged:
the same network with its maps relabelled. Tests use it to build a copy whose matching is known;
users can use it to align run B to run A before drawing them side by side.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import UserError
from ..models import Block


def permute_maps(model: nn.Module, layer: str, order: torch.Tensor) -> nn.Module:
    """Return a copy of the model whose map i of `layer` is the original's map order[i]."""
    model = copy.deepcopy(model)
    children = list(model.named_children())
    names = [n for n, _ in children]
    if layer not in names or not isinstance(dict(children)[layer], Block) or not hasattr(dict(children)[layer], "conv"):
        raise UserError(f"'{layer}' is not a conv layer of this model")
    block = dict(children)[layer]
    with torch.no_grad():
        block.conv.weight.copy_(block.conv.weight[order])
        if block.conv.bias is not None:
            block.conv.bias.copy_(block.conv.bias[order])
        if hasattr(block, "bn"):
            for t in (block.bn.weight, block.bn.bias, block.bn.running_mean, block.bn.running_var):
                t.copy_(t[order])
        _permute_reader(children[names.index(layer) + 1 :], order)
    return model


def _permute_reader(after: list[tuple[str, nn.Module]], order: torch.Tensor) -> None:
    """Permute the input channels of the first layer after `layer` that has weights."""
    spatial = None  # positions per channel once flattened
    for name, module in after:
        if isinstance(module, Block) and hasattr(module, "conv"):
            module.conv.weight.copy_(module.conv.weight[:, order])
            return
        linear = module if isinstance(module, nn.Linear) else getattr(module, "linear", None)
        if isinstance(linear, nn.Linear):
            c = len(order)
            spatial = linear.in_features // c
            w = linear.weight.view(linear.out_features, c, spatial)  # flatten order is (C, H, W)
            linear.weight.copy_(w[:, order].reshape(linear.out_features, -1))
            return
        if isinstance(module, (nn.BatchNorm2d,)):
            raise UserError(f"cannot permute through {name}")
    raise UserError("no layer reads this layer's maps")
